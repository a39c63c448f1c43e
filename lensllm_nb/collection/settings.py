"""The settings of a fine-tuning run, declared once.

:class:`FineTuneSettings` is a dataclass whose fields carry, in their metadata,
their documentation, their check and how the command line spells them. One
declaration drives the keyword arguments of :class:`~lensllm_nb.collection.finetune.FineTuner`
(which subclasses it), their validation (:meth:`FineTuneSettings.check_settings`),
the run record's config (:meth:`FineTuneSettings.result_settings`) and the flags of
``lensllm-nb finetune`` (:func:`cli_settings`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import KW_ONLY, dataclass, field, fields
from pathlib import Path

from ..errors import ConfigError
from .device import PRECISIONS

__all__ = ["FineTuneSettings", "SCHEDULERS", "PRECISIONS", "cli_settings", "settings_doc"]

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


# ---------------------------------------------------------------------- checks
def _int(minimum):
    def check(name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ConfigError(f"`{name}` must be an integer ≥ {minimum}; got {value!r}.")
    return check


def _number(positive=False, below=None):
    def check(name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or value < 0 or (positive and value == 0):
            kind = "a positive" if positive else "a non-negative"
            raise ConfigError(f"`{name}` must be {kind} finite number; got {value!r}.")
        if below is not None and not value < below:
            raise ConfigError(f"`{name}` must lie in [0, {below}); got {value!r}.")
    return check


def _choice(choices):
    def check(name, value):
        if value not in choices:
            raise ConfigError(f"`{name}` must be one of {choices}; got {value!r}.")
    return check


def _optional(inner):
    def check(name, value):
        if value is not None:
            inner(name, value)
    return check


def _bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"`{name}` must be True or False; got {value!r}.")


def _string(name, value):
    if not isinstance(value, str):
        raise ConfigError(f"`{name}` must be a string; got {value!r}.")


def _model(name, value):
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(
            f"`{name}` must be a zoo name ('zoo/NAME'), a local folder or a hub id; got {value!r}."
        )


def _targets(name, value):
    if value != "all-linear" and (
        isinstance(value, str) or not isinstance(value, (list, tuple)) or not value
        or not all(isinstance(t, str) for t in value)
    ):
        raise ConfigError(
            f"`{name}` must be 'all-linear' or a list of module names such "
            f"as ['q_proj', 'v_proj']; got {value!r}."
        )


def _setting(default, doc, check=None, *, cli=None, when=None):
    """A field: default, numpydoc line, check, CLI type (None: no flag), condition of the check."""
    return field(default=default, metadata={"doc": doc, "check": check, "cli": cli, "when": when})


def _epochs_apply(s):
    return s.max_steps is None


def _lora_apply(s):
    return s.lora


# -------------------------------------------------------------------- settings
@dataclass(eq=False)
class FineTuneSettings:
    """Every setting of a fine-tuning run, stored unchanged and checked when used.

    The fields, their meaning and their checks are declared below, once; see
    :class:`lensllm_nb.collection.finetune.FineTuner` for the parameters as users see them
    (``FineTuner.__doc__`` lists them from these declarations).
    """

    model: object = field(metadata={
        "doc": "``\"zoo/NAME\"`` (an offline zoo candidate), a local ``save_pretrained`` folder, "
               "or a Hugging Face Hub model id. Stored runs are named by this string.",
        "check": _model, "cli": None, "when": None})
    _: KW_ONLY
    revision: str | None = _setting(
        None, "Git revision (branch, tag or commit) of a hub model, for reproducible runs.", cli=str)
    epochs: int = _setting(3, "Passes over the training subset (ignored when `max_steps` is set).",
                           _int(1), cli=int, when=_epochs_apply)
    max_steps: int | None = _setting(
        None, "Total optimizer steps, cycling through the subset as often as needed.",
        _optional(_int(1)), cli=int)
    lr: float = _setting(5e-5, "Peak learning rate of AdamW.", _number(positive=True), cli=float)
    batch_size: int = _setting(16, "Examples per forward pass.", _int(1), cli=int)
    grad_accum: int = _setting(
        1, "Forward passes per optimizer step (effective batch ``batch_size * grad_accum``).",
        _int(1), cli=int)
    weight_decay: float = _setting(0.0, "AdamW weight decay.", _number(), cli=float)
    warmup_ratio: float = _setting(
        0.0, "Share of the optimizer steps spent warming the learning rate up, in [0, 1).",
        _number(below=1), cli=float)
    scheduler: str = _setting(
        "linear", "Learning-rate schedule (transformers ``get_scheduler``): one of "
        "``linear``, ``cosine``, ``constant``, ``constant_with_warmup``.",
        _choice(SCHEDULERS), cli=str)
    max_grad_norm: float | None = _setting(
        1.0, "Gradient clipping norm; None disables clipping.", _optional(_number(positive=True)),
        cli=float)
    lora: bool = _setting(False, "Fine-tune LoRA adapters (peft) instead of all weights.", _bool,
                          cli=bool)
    lora_r: int = _setting(8, "LoRA rank.", _int(1), cli=int, when=_lora_apply)
    lora_alpha: float = _setting(16, "LoRA scaling.", _number(positive=True), cli=float,
                                 when=_lora_apply)
    lora_dropout: float = _setting(0.0, "LoRA dropout.", _number(), cli=float, when=_lora_apply)
    lora_target_modules: object = _setting(
        "all-linear", "Modules that get adapters: ``\"all-linear\"`` or a list of names.",
        _targets, when=_lora_apply)
    early_stopping_patience: int | None = _setting(
        None, "Stop after this many evaluations of the validation loss without improvement "
        "and keep the best weights. Needs a validation split (``TaskData(..., val_size=64)``).",
        _optional(_int(1)), cli=int)
    eval_steps: int | None = _setting(
        None, "Optimizer steps between validation evaluations (default: once an epoch).",
        _optional(_int(1)), cli=int)
    max_input_length: int = _setting(
        128, "Token budget of the input (the whole text in the \"text\" format); see "
        ":func:`lensllm_nb.collection.tokenizing.tokenize`.", _int(4), cli=int)
    max_target_length: int = _setting(64, "Token budget of the target.", _int(4), cli=int)
    separator: str = _setting("\n", "Text between input and target in causal input/target "
                              "sequences.", _string, cli=str)
    precision: str = _setting(
        "auto", "``\"auto\"`` (bf16 autocast on a GPU that supports it, else fp32), "
        "``\"fp32\"`` or ``\"bf16\"``.", _choice(PRECISIONS), cli=str)
    device: str = _setting("auto", "``\"auto\"`` (a GPU when torch sees one), ``\"cpu\"``, "
                           "``\"cuda\"`` or ``\"cuda:N\"``.", cli=str)
    eval_batch_size: int | None = _setting(
        None, "Batch size of test/validation evaluation (default ``2 * batch_size``); does not "
        "change the result.", _optional(_int(1)), cli=int)
    ntk_probe: int = _setting(
        0, "Training-pool examples on which to compute the NTK features of the pretrained "
        "model (0: none); computed once per model and task and stored with every run (over "
        "the trained parameters: the LoRA adapters when `lora` is set).", _int(0), cli=int)
    ntk_sketch_dim: int = _setting(4096, "Sketch dimension of the NTK gradients.", _int(1),
                                   cli=int)
    threads: int | None = _setting(
        None, "torch CPU threads while the tuner runs (restored afterwards); None keeps torch's "
        "setting. Not part of the config hash.", _optional(_int(1)), cli=int)
    progress: bool = _setting(True, "Show tqdm bars for the grid and for each run.", _bool)

    def check_settings(self):
        """Raise :class:`~lensllm_nb.errors.ConfigError` for the first setting that is not valid."""
        for spec in fields(self):
            meta = spec.metadata
            if not meta or meta["check"] is None:
                continue
            if meta["when"] is None or meta["when"](self):
                meta["check"](spec.name, getattr(self, spec.name))

    def result_settings(self, *, text_pairs_causal, precision):
        """The settings that change a run's result, as the run config records them.

        Parameters
        ----------
        text_pairs_causal : bool
            Whether the separator is used (input/target pairs on a causal model).
        precision : str
            The resolved precision.
        """
        lora = None
        if self.lora:
            lora = {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
                    "target_modules": self.lora_target_modules}
        return {
            "epochs": None if self.max_steps is not None else self.epochs,
            "max_steps": self.max_steps,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "weight_decay": self.weight_decay,
            "warmup_ratio": self.warmup_ratio,
            "scheduler": self.scheduler,
            "max_grad_norm": self.max_grad_norm,
            "lora": lora,
            "early_stopping_patience": self.early_stopping_patience,
            "eval_steps": self.eval_steps if self.early_stopping_patience is not None else None,
            "max_input_length": self.max_input_length,
            "max_target_length": self.max_target_length,
            "separator": self.separator if text_pairs_causal else None,
            "precision": precision,
            "ntk": ({"probe": self.ntk_probe, "sketch_dim": self.ntk_sketch_dim, "seed": 0}
                    if self.ntk_probe else None),
        }


def cli_settings() -> dict:
    """Return ``{name: (type, help)}`` of the settings the command line takes as flags."""
    return {
        spec.name: (spec.metadata["cli"], spec.metadata["doc"])
        for spec in fields(FineTuneSettings)
        if spec.metadata and spec.metadata.get("cli") is not None
    }


def settings_doc() -> str:
    """The numpydoc ``Parameters`` lines of every setting, from the declarations."""
    lines = []
    for spec in fields(FineTuneSettings):
        if spec.metadata:
            lines.append(f"    {spec.name} : {spec.type}\n        {spec.metadata['doc']}")
    return "\n".join(lines)
