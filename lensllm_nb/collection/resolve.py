"""Names into things: a model name into a model and tokenizer, a dataset name into a task.

A user names a model as ``"zoo/NAME"`` (a candidate of the offline zoo), a local
``save_pretrained`` folder or a Hugging Face Hub id, and a dataset as ``"zoo"``
(the zoo's task), a data file or folder, or a hub dataset id. This module is
the only place that knows those names: :mod:`lensllm_nb.collection.data` reads files and
the hub, :mod:`lensllm_nb.collection.zoo` builds the zoo, and neither calls the other by
name. No code from a model folder or the hub ever runs: every load passes
``trust_remote_code=False``, and a folder that needs its own code is refused.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from ..errors import ConfigError, FinetuneError
from ..utils.provenance import config_hash
from ..utils.validation import first_line
from . import data, zoo, zoo_tasks

__all__ = ["resolve_model", "load_task", "load_model", "model_revision"]

# Files of a local model folder that identify its weights (see model_revision).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_TOKENIZER_PREFIXES = ("tokenizer", "vocab", "merges", "special_tokens_map", "spiece", "sentencepiece")
_WHOLE_FILE_LIMIT = 64 << 20
_SAMPLE_BYTES = 1 << 20


def resolve_model(model, *, revision=None):
    """Return ``(path_or_id, config)`` for a zoo name, a local folder or a hub id.

    Only the config is read (no weights), so a bad name fails fast. `revision`
    pins a hub model to a branch, tag or commit.

    Raises
    ------
    ConfigError
        For an unknown zoo name, a missing folder, a folder without a model
        config, or a name the Hugging Face Hub does not resolve from here.
    """
    from transformers import AutoConfig

    text = str(model)
    if zoo.is_zoo_name(text):
        path = zoo.resolve(text)
        return path, AutoConfig.from_pretrained(path, trust_remote_code=False)
    path = Path(text).expanduser()
    if text.startswith((".", "/", "~")) or path.exists():
        return path, _local_config(text, path)
    try:
        return text, AutoConfig.from_pretrained(text, revision=revision, trust_remote_code=False)
    except Exception as exc:  # hub errors come as OSError, ValueError, HTTP errors
        raise ConfigError(
            f"`model` {text!r} is neither a zoo name, a local folder nor a Hugging Face Hub "
            f"model reachable from here ({type(exc).__name__}: {first_line(exc)}). Check the "
            f"spelling; offline, use a zoo model ({', '.join(zoo.names())}) or a local folder."
        ) from None


def load_task(spec, **settings):
    """Resolve a dataset name into a :class:`~lensllm_nb.collection.data.TaskData`.

    Parameters
    ----------
    spec : str, Path or TaskData
        ``"zoo"`` for the offline zoo task, a zoo corpus task (``zoo_tasks.TASKS``:
        ``"zoo-name"``, ``"zoo-args"``, ``"zoo-next-line"``); otherwise anything
        :func:`lensllm_nb.collection.data.read_task` takes (a file, a folder, a hub id, a TaskData).
    **settings
        Passed to the TaskData constructor (format, column names, split sizes).
    """
    if isinstance(spec, str) and spec == zoo.TASK_NAME:
        return zoo.task_data(**settings)
    if isinstance(spec, str) and spec in zoo_tasks.TASKS:
        return zoo_tasks.task_data(spec, **settings)
    return data.read_task(spec, **settings)


def load_model(path, *, name, revision=None, encoder_decoder=False, device=None, lora=None):
    """Load a model and its tokenizer in fp32, optionally wrapped with LoRA adapters.

    Parameters
    ----------
    path : str or Path
        What :func:`resolve_model` returned.
    name : str
        The model as the user named it (for messages).
    revision : str, optional
    encoder_decoder : bool
        Load a sequence-to-sequence model instead of a causal one.
    device : torch.device, optional
    lora : dict, optional
        ``r``, ``alpha``, ``dropout``, ``target_modules`` of peft's LoraConfig.

    Returns
    -------
    model, tokenizer, decoder_start_token_id, params
        ``params`` counts the pretrained model's parameters (adapters excluded).

    Raises
    ------
    FinetuneError
        For a checkpoint that cannot be loaded, or an encoder-decoder without
        ``decoder_start_token_id``.
    ConfigError
        For LoRA target modules the model does not have.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    auto = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=False)
        # fp32 master weights; bf16 comes from autocast, which keeps AdamW exact.
        model = auto.from_pretrained(path, revision=revision, dtype=torch.float32, trust_remote_code=False)
    except Exception as exc:  # a corrupt or incompatible checkpoint
        raise FinetuneError(
            f"`model` {name!r} could not be loaded ({type(exc).__name__}: "
            f"{first_line(exc)}); check that the folder holds a transformers "
            "model and tokenizer saved with save_pretrained."
        ) from None
    params = sum(p.numel() for p in model.parameters())
    decoder_start = getattr(model.config, "decoder_start_token_id", None)
    if encoder_decoder and decoder_start is None:
        raise FinetuneError(
            f"`model` {name!r} is an encoder-decoder without `decoder_start_token_id` "
            "in its config; set it (often the pad token id) and save the model again."
        )
    if device is not None:
        model.to(device)
    if lora is not None:
        model = _with_lora(model, name, lora, encoder_decoder)
    return model, tokenizer, decoder_start, params


def model_revision(path, config):
    """Identify the weights: the hub commit, or a digest of the local folder's files.

    The digest covers the config, the tokenizer files and the weight files'
    contents, so a folder rebuilt or retrained in place (same names, same sizes,
    new weights) gets a new config hash and is not skipped as already run.
    """
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return commit
    folder = Path(path)
    if not folder.is_dir():
        return None
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json"
                            or p.name.startswith(_TOKENIZER_PREFIXES))
    )
    return config_hash({p.name: _file_digest(p) for p in files})


# ---------------------------------------------------------------------- helpers
def _local_config(text, path):
    from transformers import AutoConfig

    if not path.is_dir():
        raise ConfigError(
            f"`model` {text!r} is not an existing folder; pass a folder saved with "
            "save_pretrained, a hub id such as 'gpt2', or a zoo name "
            f"({', '.join(zoo.names())})."
        )
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"`model` folder {text!r} has no config.json, so it is not a transformers "
            "model; pass the folder written by save_pretrained."
        )
    _refuse_remote_code(text, path / "config.json")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:
        raise ConfigError(
            f"`model` folder {text!r} has an unreadable config.json ({type(exc).__name__}: "
            f"{first_line(exc)})."
        ) from None


def _refuse_remote_code(text, config_file):
    """Raise `ConfigError` when the folder's model type exists only as code inside it (``auto_map``)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return  # unreadable: AutoConfig says why
    if not isinstance(config, dict) or not config.get("auto_map"):
        return
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"`model` folder {text!r} needs its own Python code to load (config.json has an `auto_map` "
            f"and model_type {model_type!r}, which transformers does not ship); lensllm-nb never runs "
            "code from a model folder. Use a model of an architecture transformers ships, or save it "
            "again as one with save_pretrained."
        )


def _with_lora(model, name, lora, encoder_decoder):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)  # the adapters' initial weights are part of the model
    targets = lora["target_modules"]
    config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM",
        # GPT-2 stores its projections transposed (Conv1D); saying so up front is
        # what peft would switch to anyway, without a warning in every report.
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
    )
    try:
        with warnings.catch_warnings():
            # peft asks transformers a deprecated question; not the user's concern.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as exc:  # peft names the modules it could not find
        raise ConfigError(
            f"`lora_target_modules` {targets!r} do not fit {name!r}: {first_line(exc)}"
        ) from None


def _file_digest(path):
    """SHA-256 of a file; above 64 MiB, of its size and three 1 MiB samples.

    Reading every byte of a multi-gigabyte checkpoint on each grid call costs
    seconds to minutes; samples at the start, middle and end still change when
    the weights do (the end of a safetensors file is tensor data).
    """
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= _WHOLE_FILE_LIMIT:
            digest.update(handle.read())
        else:
            digest.update(str(size).encode())
            for offset in (0, size // 2, size - _SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()
