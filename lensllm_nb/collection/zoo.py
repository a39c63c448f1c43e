"""An offline model zoo: a task and small pretrained candidates, built on this machine.

Model selection needs candidates that differ in architecture, size and what they
learned before fine-tuning; Hub models need a network. The zoo builds its own small
candidates and a code → summary task from the standard library's sources, cached,
so the demo and the tests run offline.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.collection.zoo``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import re
import shutil
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..utils.provenance import cache_dir, config_hash
from . import training
from .data import TaskData
from .device import torch_threads
from .tokenizing import Collator, tokenize

__all__ = [
    "ZooModel",
    "CANDIDATES",
    "CORPUS_CANDIDATES",
    "DEMO_SIZES",
    "DEMO_SETTINGS",
    "FULL_SIZE",
    "SELECTION_MAX_TRAIN",
    "SELECTION_SIZES",
    "ZOO_VERSION",
    "TASK_NAME",
    "PREFIX",
    "names",
    "corpus_names",
    "is_task_module",
    "zoo_dir",
    "build",
    "resolve",
    "is_zoo_name",
    "task_data",
]

ZOO_VERSION = 4
PREFIX = "zoo/"
TASK_NAME = "zoo"

# The demo's selection question. A selection sees every candidate fine-tuned on
# the nested subsets SELECTION_SIZES (up to S = SELECTION_MAX_TRAIN) and predicts
# the loss of fine-tuning on the full target FULL_SIZE (T = 16 S): the visible runs
# cost sum(SELECTION_SIZES) / T ≈ 12 % of the FLOPs of fine-tuning every candidate
# on T, and the three smallest, where progressive selection starts, 2.7 % (under its
# 5 % budget). Each candidate is also fine-tuned once on T, as ground truth only.
#
# v4 fine-tunes LoRA adapters (rank 8, lr 1e-2), as one fine-tunes an LLM, where
# v3 trained every weight. The candidates are pretrained on 100-150 steps only, so
# a full fine-tune on T (768 steps) re-taught them general text: the full-data loss
# fell by 1-1.6 nats below anything the subsets showed, and no extrapolation from
# them could see it (five of six full runs outside their 90% intervals). Adapters
# cannot re-train the model, so the full run continues what the subsets show, as
# for a real LLM whose pretraining dwarfs its fine-tuning data (docs/BENCHMARKS.md,
# "Zoo v4"). Batches of 8 give the small subsets more optimizer steps per example
# than 16. One torch thread per run: on a shared machine two threads of such
# small models ran 4x slower than one; parallelism comes from running candidates
# side by side instead.
SELECTION_SIZES = (0, 8, 16, 32, 64, 128)
SELECTION_MAX_TRAIN = max(SELECTION_SIZES)
FULL_SIZE = 16 * SELECTION_MAX_TRAIN
DEMO_SIZES = (*SELECTION_SIZES, FULL_SIZE)
DEMO_SETTINGS = {
    "epochs": 3,
    "lr": 1e-2,
    "batch_size": 8,
    "lora": True,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.1,
    "max_input_length": 40,
    "max_target_length": 20,
    "separator": "\n# summary: ",
    "threads": 1,
}

_TASK_SPEC = {
    # Share of modules (by name hash) that make the task; the rest is pretraining text.
    "task_share": 0.5,
    "test_size": 256,
    "val_size": 64,
    "split_seed": 0,
    "max_code_chars": 400,
    "summary_words": (3, 24),
}
_TOKENIZER_SPEC = {"vocab_size": 2048, "pad": "<|pad|>", "eos": "<|endoftext|>"}
_PRETRAIN_SPEC = {"seq_len": 64, "batch_size": 16, "lr": 3e-3, "warmup_ratio": 0.1}

# name -> architecture, shape, pretraining slice and steps. Steps are few on
# purpose: the candidates must differ in what they know, not all converge.
# gpt2-tiny, the second smallest, is pretrained longest, on code -> summary pairs
# of other modules: the small in-domain model that ends best after fine-tuning
# although neither its zero-shot loss nor its size says so (docs/BENCHMARKS.md,
# "Zoo v4").
CANDIDATES = {
    "gpt2-tiny": {
        "arch": "gpt2",
        "config": {"n_embd": 48, "n_layer": 2, "n_head": 2, "n_inner": 192},
        "slice": "pairs",
        "steps": 500,
        "seed": 1,
    },
    "t5-small": {
        "arch": "t5",
        "config": {"d_model": 96, "d_ff": 256, "d_kv": 24, "num_heads": 4, "num_layers": 2,
                   "num_decoder_layers": 2},
        "slice": "pairs",
        "steps": 150,
        "seed": 2,
    },
    "neox-small": {
        "arch": "gpt_neox",
        "config": {"hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
                   "intermediate_size": 384},
        "slice": "docs",
        "steps": 150,
        "seed": 3,
    },
    "llama-small": {
        "arch": "llama",
        "config": {"hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "intermediate_size": 256},
        "slice": "code",
        "steps": 150,
        "seed": 4,
    },
    "gpt2-wide": {
        "arch": "gpt2",
        "config": {"n_embd": 192, "n_layer": 2, "n_head": 4, "n_inner": 768},
        "slice": "mixed",
        "steps": 100,
        "seed": 5,
    },
    "llama-tiny": {
        "arch": "llama",
        "config": {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 1, "intermediate_size": 128},
        "slice": "docs",
        "steps": 100,
        "seed": 6,
    },
}

# The zoo corpus's extra candidates (benchmarks/build_zoo_corpus.py), not the demo's: built
# into folders named by their own spec, so the demo's zoo and its six candidates stay as they are.
CORPUS_CANDIDATES = {
    "neox-tiny": {"arch": "gpt_neox", "slice": "code", "steps": 400, "seed": 7,
                  "config": {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 192}},
    "gpt2-small": {"arch": "gpt2", "slice": "mixed", "steps": 250, "seed": 8,
                   "config": {"n_embd": 96, "n_layer": 3, "n_head": 4, "n_inner": 384}},
}
_ALL_CANDIDATES = {**CANDIDATES, **CORPUS_CANDIDATES}

_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "pydoc_data", "turtledemo", "__pycache__"}


@dataclass(frozen=True)
class ZooModel:
    """A built zoo candidate.

    Attributes
    ----------
    name : str
        ``"zoo/NAME"``, the model name runs are stored under.
    path : pathlib.Path
        The ``save_pretrained`` folder (model and tokenizer).
    params : int
        Parameter count.
    family : str
        The transformers ``model_type`` (``"gpt2"``, ``"llama"``, ...).
    pretrain_slice : str
        The text it was pretrained on: ``"code"``, ``"docs"``, ``"pairs"`` or ``"mixed"``.
    pretrain_loss : float
        Its training loss at the end of pretraining.
    """

    name: str
    path: Path
    params: int
    family: str
    pretrain_slice: str
    pretrain_loss: float


def names() -> list:
    """Return the candidate names, ``"zoo/NAME"``, in build order."""
    return [PREFIX + name for name in CANDIDATES]


def corpus_names() -> list:
    """Return the zoo corpus's candidates, ``"zoo/NAME"``: the demo's six, then :data:`CORPUS_CANDIDATES`."""
    return [PREFIX + name for name in _ALL_CANDIDATES]


def is_task_module(module) -> bool:
    """Whether stdlib module `module` (dotted name) gives task text rather than pretraining text."""
    return _bucket(module) < _TASK_SPEC["task_share"]


def is_zoo_name(model) -> bool:
    """Return True for a ``"zoo/NAME"`` string (known or not)."""
    return isinstance(model, str) and model.startswith(PREFIX)


def zoo_dir() -> Path:
    """Return the versioned folder of the current zoo spec inside :func:`cache_dir`."""
    spec = {
        "version": ZOO_VERSION,
        "python": platform.python_version(),
        "task": _TASK_SPEC,
        "tokenizer": _TOKENIZER_SPEC,
        "pretrain": _PRETRAIN_SPEC,
        "candidates": CANDIDATES,
        "separator": DEMO_SETTINGS["separator"],
    }
    return cache_dir() / "zoo" / f"v{ZOO_VERSION}-{config_hash(spec)}"


def build(names=None, *, force=False, progress=True) -> list:
    """Build (or reuse) the zoo task, tokenizer and candidates.

    Parameters
    ----------
    names : list of str, optional
        Candidates to build, with or without the ``"zoo/"`` prefix; default all.
    force : bool
        Rebuild even when a cached build exists.
    progress : bool
        Show a tqdm bar over the candidates.

    Returns
    -------
    list of ZooModel
        In the order of `names` (default: :data:`CANDIDATES` order).
    """
    wanted = _check_names(list(CANDIDATES) if names is None else names)
    root = zoo_dir()
    if force and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    missing = [n for n in wanted if not (_model_path(root, n) / "zoo.json").is_file()]
    if missing:
        from tqdm.auto import tqdm

        corpus = _ensure_corpus(root)
        _ensure_tokenizer(root, corpus)
        # One thread: parallel reductions round differently with the thread
        # count (weights differ by ~1e-4 between 1 and 2 threads), so a fixed
        # count makes a build reproducible whatever torch's setting; and models
        # this small gain little from a second thread on a shared machine.
        with torch_threads(1):
            for name in tqdm(missing, desc="zoo build", disable=not progress):
                _publish(_model_path(root, name), lambda tmp, n=name: _pretrain(n, corpus, root, tmp))
    return [_read_model(root, n) for n in wanted]


def resolve(model) -> Path:
    """Return the folder of zoo candidate `model` (``"zoo/NAME"``), building it if needed."""
    (name,) = _check_names([model], argument="model")
    return build([name], progress=False)[0].path


def task_data(**settings):
    """Return the zoo's code → summary task as a :class:`~lensllm_nb.collection.data.TaskData`.

    Parameters
    ----------
    **settings
        Override the task settings (``test_size``, ``val_size``, ``split_seed``);
        the defaults give a 256-example test split and a 64-example validation
        split, both fixed.
    """
    allowed = {"test_size", "val_size", "split_seed"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(
            f"The zoo task takes only {sorted(allowed)}; got {unknown}. The zoo task "
            "has fixed columns `input` and `target`."
        )
    corpus = _ensure_corpus(zoo_dir())
    options = {k: _TASK_SPEC[k] for k in allowed}
    options.update(settings)
    return TaskData.from_records(corpus["task"], name=TASK_NAME, format="pairs", **options)


# ---------------------------------------------------------------------- corpus
def _check_names(requested, argument="names"):
    if isinstance(requested, str):
        requested = [requested]
    out = []
    for raw in requested:
        name = raw[len(PREFIX):] if isinstance(raw, str) and raw.startswith(PREFIX) else raw
        if not isinstance(name, str) or name not in _ALL_CANDIDATES:
            raise ConfigError(
                f"`{argument}` {raw!r} is not a zoo candidate; choose one of {corpus_names()}."
            )
        out.append(name)
    return out


def _ensure_corpus(root):
    path = root / "corpus.json"
    if not path.is_file():
        _publish_file(path, json.dumps(_extract_corpus()))
    return json.loads(path.read_text(encoding="utf-8"))


def _extract_corpus():
    """Parse the standard library into the task pairs and the pretraining slices."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in stdlib.rglob("*.py")
        if not _SKIP_DIRS & set(p.relative_to(stdlib).parts)
    )
    low, high = _TASK_SPEC["summary_words"]
    task, pairs, code, docs = [], [], [], []
    seen = set()
    for file in files:
        module = ".".join(file.relative_to(stdlib).with_suffix("").parts)
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are templates or in other encodings
        is_task = _bucket(module) < _TASK_SPEC["task_share"]
        module_doc = ast.get_docstring(tree)
        if module_doc and not is_task:
            docs.append(module_doc)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            source = _code_without_docstring(node)
            summary = _summary(doc)
            if source is None or source in seen:
                continue
            seen.add(source)
            source = source[: _TASK_SPEC["max_code_chars"]]
            usable = summary is not None and low <= len(summary.split()) <= high
            if is_task:
                if usable:
                    task.append({"input": source, "target": summary, "module": module})
                continue
            code.append(source)
            docs.append(doc)
            if usable:
                pairs.append(source + DEMO_SETTINGS["separator"] + summary)
    return {"task": task, "code": code, "docs": docs, "pairs": pairs}


def _bucket(module):
    digest = hashlib.sha256(module.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _code_without_docstring(node):
    body = node.body[1:] or [ast.Pass()]
    stripped = type(node)(
        name=node.name, args=node.args, body=body, decorator_list=[], returns=node.returns,
        type_comment=None, **({"type_params": []} if "type_params" in node._fields else {}),
    )
    try:
        return ast.unparse(ast.fix_missing_locations(stripped))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None


def _summary(doc):
    first = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", first)
    summary = match.group(1) if match else first
    # Docstrings that start with a signature ("f(x) -> y") are not summaries.
    if not summary or summary.endswith(":") or "->" in summary:
        return None
    return summary


# ------------------------------------------------------------------- tokenizer
def _ensure_tokenizer(root, corpus):
    path = root / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        _publish(path, lambda tmp: _train_tokenizer(corpus).save_pretrained(tmp))
    return _load_tokenizer(path)


def _train_tokenizer(corpus):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = _TOKENIZER_SPEC
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["vocab_size"],
        special_tokens=[spec["pad"], spec["eos"]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Pretraining text only: the task's own summaries stay unseen.
    tokenizer.train_from_iterator(corpus["code"] + corpus["docs"], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=spec["pad"],
        eos_token=spec["eos"],
        bos_token=spec["eos"],
    )


def _load_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


# ------------------------------------------------------------------ candidates
def _model_config(name, tokenizer):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, T5Config

    spec = _ALL_CANDIDATES[name]
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    positions = 128
    shape = dict(spec["config"])
    # Dropout off: tiny models on tiny data, and dropout would make the zero-shot
    # loss depend on train/eval mode bookkeeping.
    if spec["arch"] == "gpt2":
        return GPT2Config(**ids, bos_token_id=tokenizer.eos_token_id, n_positions=positions,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **shape)
    if spec["arch"] == "gpt_neox":
        return GPTNeoXConfig(**ids, bos_token_id=tokenizer.eos_token_id,
                             max_position_embeddings=positions, tie_word_embeddings=True,
                             hidden_dropout=0.0, attention_dropout=0.0, **shape)
    if spec["arch"] == "llama":
        return LlamaConfig(**ids, bos_token_id=tokenizer.eos_token_id,
                           max_position_embeddings=positions, tie_word_embeddings=True, **shape)
    return T5Config(**ids, decoder_start_token_id=tokenizer.pad_token_id, dropout_rate=0.0, **shape)


def _pretrain(name, corpus, root, out):
    """Pretrain candidate `name` on its slice and save it (with the tokenizer) to `out`."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    started = time.perf_counter()
    spec, train = _ALL_CANDIDATES[name], _PRETRAIN_SPEC
    tokenizer = _load_tokenizer(root / "tokenizer")
    config = _model_config(name, tokenizer)
    torch.manual_seed(spec["seed"])
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_config(config, trust_remote_code=False)

    if config.is_encoder_decoder:
        # An encoder-decoder learns code -> summary pairs of the pretraining modules.
        rows = _seq2seq_rows(corpus, spec["slice"])
        features = tokenize(rows, tokenizer, format="pairs", encoder_decoder=True,
                            max_input_length=DEMO_SETTINGS["max_input_length"],
                            max_target_length=DEMO_SETTINGS["max_target_length"])
        collate = Collator(tokenizer.pad_token_id, decoder_start_token_id=config.decoder_start_token_id)
    else:
        features = _packed(corpus, spec["slice"], tokenizer, train["seq_len"])
        collate = Collator(tokenizer.pad_token_id)

    optimization = training.Optimization(
        lr=train["lr"], total_steps=spec["steps"], betas=(0.9, 0.98), weight_decay=0.01,
        scheduler="cosine", warmup_steps=int(train["warmup_ratio"] * spec["steps"]), max_grad_norm=1.0,
    )
    batches = _pretrain_batches(features, collate, train["batch_size"], np.random.default_rng(spec["seed"]))
    done = training.train(model, batches, optimization, device=torch.device("cpu"),
                          hint=f"zoo candidate {name!r} diverged in pretraining; lower its lr.")

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {
        "name": PREFIX + name,
        "params": int(sum(p.numel() for p in model.parameters())),
        "family": config.model_type,
        "pretrain_slice": spec["slice"],
        "pretrain_steps": spec["steps"],
        "pretrain_loss": float(np.mean(done["step_losses"][-10:])),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (out / "zoo.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _pretrain_batches(features, collate, size, rng):
    """One-batch steps over `features` in seeded random order, reshuffled when a pass runs out."""
    order, cursor = rng.permutation(len(features)), 0
    while True:
        if cursor + size > len(order):
            order, cursor = rng.permutation(len(features)), 0
        yield [collate([features[i] for i in order[cursor:cursor + size]])]
        cursor += size


def _slice_texts(corpus, slice_name):
    if slice_name == "mixed":
        return corpus["code"] + corpus["docs"] + corpus["pairs"]
    return corpus[slice_name]


def _packed(corpus, slice_name, tokenizer, seq_len):
    """Concatenate a slice's texts (EOS between them) into fixed-length rows."""
    ids = tokenizer(_slice_texts(corpus, slice_name), add_special_tokens=False)["input_ids"]
    stream = [t for row in ids for t in row + [tokenizer.eos_token_id]]
    return [
        {"input_ids": stream[i:i + seq_len], "labels": stream[i:i + seq_len]}
        for i in range(0, len(stream) - seq_len + 1, seq_len)
    ]


def _seq2seq_rows(corpus, slice_name):
    if slice_name != "pairs":
        raise ConfigError(
            f"Encoder-decoder zoo candidates pretrain on the 'pairs' slice; got {slice_name!r}."
        )
    sep = DEMO_SETTINGS["separator"]
    return [dict(zip(("input", "target"), p.split(sep, 1))) for p in corpus["pairs"]]


def _model_path(root, name):
    """A demo candidate's folder; a corpus candidate's is named by its own spec's hash."""
    if name in CANDIDATES:
        return root / "models" / name
    return root / "extra" / f"{name}-{config_hash(CORPUS_CANDIDATES[name])}"


def _read_model(root, name):
    path = _model_path(root, name)
    meta = json.loads((path / "zoo.json").read_text(encoding="utf-8"))
    return ZooModel(
        name=meta["name"],
        path=path,
        params=meta["params"],
        family=meta["family"],
        pretrain_slice=meta["pretrain_slice"],
        pretrain_loss=meta["pretrain_loss"],
    )


# ------------------------------------------------------------------ atomicity
def _publish(final, make):
    """Run ``make(tmp_folder)`` and move the folder to `final` in one rename.

    Another process building the same artefact at the same time produces the
    same bytes (the build is deterministic), so whichever rename lands first wins
    and the other copy is discarded; a killed build leaves only a temporary folder.
    """
    if final.exists():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        make(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publish_file(final, text):
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, final)
