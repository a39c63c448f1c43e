"""A user's own models and data, built offline: the setting of templates/own_models.yaml (issue 21).

Three tiny causal LMs of different architectures (GPT-2, Llama, GPT-NeoX) saved with
``save_pretrained`` under ``my_models/``, sharing a word-level tokenizer, and a JSONL
task under ``my_data/`` whose columns are ``question`` and ``answer`` (not the
default ``input``/``target``). :func:`run_own_models` lays them out next to copies
of the notebooks and the template, and runs the template unchanged through
``lensllm-nb run``.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "own_models.yaml"
MODELS = {"gpt2-mini": "gpt2", "llama-mini": "llama", "neox-mini": "gpt_neox"}
TASK_FILE = "pairs.jsonl"
_WORDS = [f"w{i}" for i in range(40)]
_ROWS = 2400


@dataclass(frozen=True)
class OwnModelsRun:
    """The finished run: exit code, its --out folder and the full names the grid used."""

    code: int
    out: Path
    models: dict  # short name -> full path
    dataset: str  # the task file's full path
    stdout: str


def write_task(folder) -> Path:
    """A JSONL task: reverse 3–6 words; columns ``question``/``answer``."""
    rng = random.Random(0)
    path = Path(folder) / TASK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(_ROWS):
            words = rng.choices(_WORDS, k=rng.randint(3, 6))
            handle.write(json.dumps({"question": " ".join(words), "answer": " ".join(words[::-1])}) + "\n")
    return path


def write_models(folder) -> dict:
    """Save the three tiny models (with the tokenizer) under `folder`; return name -> path."""
    tokenizer = _tokenizer()
    paths = {}
    for i, (name, kind) in enumerate(MODELS.items()):
        model = _model(kind, tokenizer, width=16 * (i + 1))
        paths[name] = Path(folder) / name
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def run_own_models(root, out) -> OwnModelsRun:
    """Lay out `root` like a user's checkout, run the template there; return the run."""
    import contextlib
    import io

    from lensllm_nb.cli import main

    root = Path(root)
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "templates").mkdir(parents=True)
    grid = shutil.copy(TEMPLATE, root / "templates" / TEMPLATE.name)
    models = write_models(root / "my_models")
    task = write_task(root / "my_data")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", str(grid), "--out", str(out)])
    return OwnModelsRun(code=code, out=Path(out), models={k: str(v) for k, v in models.items()},
                        dataset=str(task), stdout=printed.getvalue())


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<unk>", *_WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<eos>", unk_token="<unk>")


def _model(kind, tokenizer, width):
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig

    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
           "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.eos_token_id}
    if kind == "gpt2":
        config = GPT2Config(**ids, n_embd=width, n_layer=2, n_head=2, n_positions=64)
    elif kind == "llama":
        config = LlamaConfig(**ids, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    else:
        config = GPTNeoXConfig(**ids, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                               num_attention_heads=2, max_position_embeddings=64)
    return AutoModelForCausalLM.from_config(config)


def legend_colours(figure) -> dict:
    """``label -> (r, g, b)`` of every key entry of a figure (axes keys and figure keys).

    A label's rank and notes ("1. gpt2  p_best 0.30", "gpt2 (zero-shot off range)")
    are dropped, so the key is the model name as shown.
    """
    import re

    from matplotlib.colors import to_rgb

    legends = [ax.get_legend() for ax in figure.axes if ax.get_legend()] + list(figure.legends)
    found = {}
    for legend in legends:
        for text, handle in zip(legend.get_texts(), legend.legend_handles):
            colour = handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor()
            label = re.sub(r"^\d+\. ", "", text.get_text()).split("  ")[0].split(" (")[0]
            found[label] = tuple(round(c, 4) for c in to_rgb(colour))
    return found
