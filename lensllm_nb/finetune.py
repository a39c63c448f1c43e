"""Subset fine-tuning runs: fine-tune one candidate on n examples, measure its test loss.

A fine-tuning curve is the test loss of one pretrained model after fine-tuning on
nested training subsets of growing size n (n = 0 is the zero-shot loss). This
module measures such curves with transformers models:

* :class:`FineTuner` holds the settings of a run (estimator style: stored
  unchanged, validated when used), loads the model once, keeps its initial
  weights in memory and restores them before every run.
* :meth:`FineTuner.grid` / :func:`run_grid` run sizes × seeds into a
  :class:`~lensllm_nb.store.ResultsStore`, skipping runs the store already has
  (a killed grid resumes) and recording failures with their error.

The training loop is a lean hand-written torch loop rather than ``Trainer``:
for the small models this toolkit fine-tunes on CPU it measured faster (see
docs/BENCHMARKS.md, "Zoo grid"), and it gives exact token-weighted losses with
gradient accumulation. It supports optional LoRA (peft), bf16 autocast on GPUs
that support it (fp32 elsewhere), gradient accumulation, epochs or max steps,
early stopping on a validation split, and seeds.

Every run records model, dataset, n_train, seed, test_loss, train_loss, steps,
tokens seen, a FLOPs estimate (6 × parameters × tokens), the parameter count, wall
seconds, device, library versions and the hash of every setting that affects the
result, plus optional NTK features of the pretrained model (``ntk_probe``).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import time
from contextlib import contextmanager
from pathlib import Path

from .data import Collator, TaskData, load_task
from .errors import ConfigError, FinetuneError
from .provenance import config_hash, run_record

__all__ = [
    "FineTuner", "run_grid", "resolve_device", "resolve_model", "torch_threads",
    "SCHEDULERS", "PRECISIONS",
]

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16")
_ON_ERROR = ("continue", "raise")
# Files of a local model folder that identify its weights (see _model_revision).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_TOKENIZER_PREFIXES = ("tokenizer", "vocab", "merges", "special_tokens_map", "spiece", "sentencepiece")
_WHOLE_FILE_LIMIT = 64 << 20
_SAMPLE_BYTES = 1 << 20

# One loaded model per process: a notebook that calls run_grid for the same
# model on several datasets must not reload it. The key covers everything that
# changes the loaded object; only the latest model is kept, to bound memory.
_LOADED = {}


class FineTuner:
    """Fine-tune one pretrained model on training subsets and measure its test loss.

    Parameters
    ----------
    model : str or Path
        ``"zoo/NAME"`` (an offline zoo candidate), a local ``save_pretrained``
        folder, or a Hugging Face Hub model id. Stored runs are named by this string.
    revision : str, optional
        Git revision (branch, tag or commit) of a hub model, for reproducible runs.
    epochs : int
        Passes over the training subset (ignored when `max_steps` is set).
    max_steps : int, optional
        Total optimizer steps, cycling through the subset as often as needed.
    lr : float
        Peak learning rate of AdamW.
    batch_size : int
        Examples per forward pass.
    grad_accum : int
        Forward passes per optimizer step (effective batch ``batch_size * grad_accum``).
    weight_decay : float
        AdamW weight decay.
    warmup_ratio : float
        Share of the optimizer steps spent warming the learning rate up, in [0, 1).
    scheduler : {"linear", "cosine", "constant", "constant_with_warmup"}
        Learning-rate schedule (transformers ``get_scheduler``).
    max_grad_norm : float or None
        Gradient clipping norm; None disables clipping.
    lora : bool
        Fine-tune LoRA adapters (peft) instead of all weights.
    lora_r, lora_alpha, lora_dropout : int, float, float
        LoRA rank, scaling and dropout.
    lora_target_modules : list of str or "all-linear"
        Modules that get adapters.
    early_stopping_patience : int, optional
        Stop after this many evaluations of the validation loss without
        improvement and keep the best weights. Needs a validation split (for
        example ``TaskData(..., val_size=64)``).
    eval_steps : int, optional
        Optimizer steps between validation evaluations (default: once an epoch).
    max_input_length, max_target_length : int
        Token budgets of the input (the whole text in the "text" format) and of
        the target; see :func:`lensllm_nb.data.tokenize`.
    separator : str
        Text between input and target in causal input/target sequences.
    precision : {"auto", "fp32", "bf16"}
        ``"auto"``: bf16 autocast on a GPU that supports it, else fp32.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        ``"auto"`` uses a GPU when torch sees one.
    eval_batch_size : int, optional
        Batch size of test/validation evaluation (default ``2 * batch_size``); does
        not change the result.
    ntk_probe : int
        Number of training-pool examples on which to compute the NTK features of
        the pretrained model (0: none). Computed once per model and task and
        stored with every run (over the trained parameters: the LoRA adapters
        when `lora` is set).
    ntk_sketch_dim : int
        Sketch dimension of the NTK gradients.
    threads : int, optional
        torch CPU threads while this tuner runs (restored afterwards); None keeps
        torch's setting. Small models gain little from a second thread and lose
        several-fold when other processes share the cores, so the zoo demo uses
        1 and runs candidates side by side instead. Not part of the config hash.
    progress : bool
        Show tqdm bars for the grid and for each run.

    Attributes
    ----------
    model_ : transformers.PreTrainedModel
        The loaded model (peft-wrapped with LoRA), after :meth:`load`.
    tokenizer_ : transformers.PreTrainedTokenizerBase
    device_ : torch.device
    precision_ : str
        The resolved precision, ``"fp32"`` or ``"bf16"``.
    params_ : int
        Parameter count of the pretrained model (adapters excluded).
    trainable_params_ : int
    family_ : str
        The model's ``model_type``.
    encoder_decoder_ : bool
    grid_summary_ : dict
        Counts of the last :meth:`grid` call: ``run``, ``skipped``, ``failed``.
    """

    def __init__(
        self,
        model,
        *,
        revision=None,
        epochs=3,
        max_steps=None,
        lr=5e-5,
        batch_size=16,
        grad_accum=1,
        weight_decay=0.0,
        warmup_ratio=0.0,
        scheduler="linear",
        max_grad_norm=1.0,
        lora=False,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_target_modules="all-linear",
        early_stopping_patience=None,
        eval_steps=None,
        max_input_length=128,
        max_target_length=64,
        separator="\n",
        precision="auto",
        device="auto",
        eval_batch_size=None,
        ntk_probe=0,
        ntk_sketch_dim=4096,
        threads=None,
        progress=True,
    ):
        self.model = model
        self.revision = revision
        self.epochs = epochs
        self.max_steps = max_steps
        self.lr = lr
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm
        self.lora = lora
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = lora_target_modules
        self.early_stopping_patience = early_stopping_patience
        self.eval_steps = eval_steps
        self.max_input_length = max_input_length
        self.max_target_length = max_target_length
        self.separator = separator
        self.precision = precision
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.ntk_probe = ntk_probe
        self.ntk_sketch_dim = ntk_sketch_dim
        self.threads = threads
        self.progress = progress

    # ------------------------------------------------------------------ public
    def check(self, task, sizes=None) -> "FineTuner":
        """Validate settings, device, model and task without loading weights.

        Everything a grid needs is checked here, except that sequences fit the
        model's positions: that needs the tokenizer, so :meth:`grid` and
        :meth:`run` check it right after :meth:`load`. Either way bad input fails
        before a single row is written. Sets `device_`, `precision_`, `family_`
        and `encoder_decoder_`.

        Parameters
        ----------
        task : TaskData
        sizes : list of int, optional
            Subset sizes to check against the task's training pool.
        """
        self._check_settings()
        self.device_ = resolve_device(self.device)
        self.precision_ = _resolve_precision(self.precision, self.device_)
        self._path, self._config = resolve_model(self.model, revision=self.revision)
        self.family_ = self._config.model_type
        self.encoder_decoder_ = bool(getattr(self._config, "is_encoder_decoder", False))
        if not isinstance(task, TaskData):
            raise ConfigError(f"`task` must be a TaskData; got {type(task).__name__}. Use load_task(spec).")
        if task.format_ == "text" and self.encoder_decoder_:
            raise ConfigError(
                f"`model` {self.model!r} is an encoder-decoder ({self.family_}) but `dataset` "
                f"{task.name!r} is plain text; use an input/target dataset or a causal model."
            )
        if sizes is not None:
            task.check_sizes(sizes)
        if self.ntk_probe > task.n_pool:
            raise ConfigError(
                f"`ntk_probe`={self.ntk_probe} asks for more examples than the training pool "
                f"of {task.name!r} has ({task.n_pool}); use at most {task.n_pool}."
            )
        if self.early_stopping_patience is not None and task.validation_ is None:
            raise ConfigError(
                "`early_stopping_patience` needs a validation split, but "
                f"{task.name!r} has none; build the task with `val_size` (e.g. 64) or a "
                "validation file, or drop early stopping."
            )
        return self

    def config(self, task) -> dict:
        """Return every setting that affects a run's result (hashed into ``config_hash``)."""
        self.check(task)
        lora = None
        if self.lora:
            lora = {
                "r": self.lora_r,
                "alpha": self.lora_alpha,
                "dropout": self.lora_dropout,
                "target_modules": self.lora_target_modules,
            }
        return {
            "model": str(self.model),
            "model_revision": _model_revision(self._path, self._config),
            "task": task.describe(),
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
            "separator": self.separator if task.format_ == "pairs" and not self.encoder_decoder_ else None,
            "precision": self.precision_,
            "ntk": (
                {"probe": self.ntk_probe, "sketch_dim": self.ntk_sketch_dim, "seed": 0}
                if self.ntk_probe
                else None
            ),
        }

    def load(self) -> "FineTuner":
        """Load the model and tokenizer once and snapshot the weights to restore.

        Returns
        -------
        FineTuner
            self, with `model_`, `tokenizer_`, `params_` and `trainable_params_` set.
        """
        import torch

        if getattr(self, "_path", None) is None:
            raise FinetuneError("Call check(task) (or grid/run) before load().")
        key = (
            str(self._path), self.revision, str(self.device_),
            (self.lora_r, self.lora_alpha, self.lora_dropout, str(self.lora_target_modules))
            if self.lora else None,
        )
        if key not in _LOADED:
            _LOADED.clear()  # free the previous model before loading the next
            _LOADED[key] = self._load_fresh()
        state = _LOADED[key]
        self.model_ = state["model"]
        self.tokenizer_ = state["tokenizer"]
        self.params_ = state["params"]
        self._initial = state["initial"]
        self.trainable_params_ = sum(p.numel() for p in self._initial.values())
        self._collate = Collator(
            _pad_id(self.tokenizer_),
            decoder_start_token_id=state["decoder_start"] if self.encoder_decoder_ else None,
        )
        self._pin = self.device_.type == "cuda"
        self._autocast = lambda: torch.autocast(
            self.device_.type, dtype=torch.bfloat16, enabled=self.precision_ == "bf16"
        )
        return self

    def run(self, task, n_train, seed=0) -> dict:
        """Fine-tune on the subset of size `n_train` for `seed` and measure the test loss.

        Parameters
        ----------
        task : TaskData or str
            The task, or a spec for :func:`lensllm_nb.data.load_task`.
        n_train : int
            Training examples (0: zero-shot loss).
        seed : int
            Seeds the subset, the data order and torch.

        Returns
        -------
        dict
            The run record (the row a store keeps).

        Raises
        ------
        FinetuneError
            When training diverges or the model cannot be run.
        """
        task = load_task(task)
        (n_train,) = task.check_sizes([n_train])
        (seed,) = _check_seeds([seed])
        config = self.config(task)
        self.load()
        self._tokenized(task)  # a sequence too long for the model fails here, as a ConfigError
        with torch_threads(self.threads):
            return self._run(task, config, n_train, seed, self._ntk(task, config))

    def grid(self, task, sizes, seeds=(0,), store=None, *, on_error="continue"):
        """Run every size × seed, skipping runs the store already has.

        Parameters
        ----------
        task : TaskData or str
            The task, or a spec for :func:`lensllm_nb.data.load_task`.
        sizes : list of int
            Subset sizes (0: zero-shot).
        seeds : list of int
        store : ResultsStore, str or Path, optional
            Where runs are written as they finish. Opened (created) only after
            every input is validated, so bad input leaves no file behind.
        on_error : {"continue", "raise"}
            After a failed run is recorded, go on with the next run or raise.

        Returns
        -------
        pandas.DataFrame
            The runs of this call (skipped runs are in the store); ``grid_summary_``
            counts run, skipped and failed runs.
        """
        import pandas as pd

        task = load_task(task)
        sizes = task.check_sizes(sizes)
        seeds = _check_seeds(seeds)
        if on_error not in _ON_ERROR:
            raise ConfigError(f"`on_error` must be one of {_ON_ERROR}; got {on_error!r}.")
        store = _check_store(store)
        config = self.config(task)
        chash = config_hash(config)
        owned = store is not None and not _is_store(store)
        # A new store file is created only once the model has loaded, so a model
        # that cannot load leaves no empty store behind.
        from .store import is_url  # a database URL names no file: open it to skip stored runs

        opened = None if owned and not is_url(store) and not Path(store).exists() else _open_store(store)
        try:
            plan = [(seed, n) for seed in seeds for n in sizes]
            pending = [
                (seed, n) for seed, n in plan
                if opened is None or not opened.is_done(str(self.model), task.name, n, seed, chash)
            ]
            self.grid_summary_ = {"run": 0, "skipped": len(plan) - len(pending), "failed": 0}
            rows = []
            if pending:
                self.load()
                # Tokenized (and length-checked) before the store is opened or
                # written: a task the model cannot take is bad input, not a failed run.
                self._tokenized(task)
                with torch_threads(self.threads):
                    ntk = self._ntk(task, config)
                    if owned and opened is None:
                        opened = _open_store(store)
                    rows = self._grid_runs(task, config, pending, opened, on_error, ntk)
        finally:
            if owned and opened is not None:
                opened.close()
        return pd.DataFrame(rows)

    def _grid_runs(self, task, config, pending, store, on_error, ntk):
        from tqdm.auto import tqdm

        rows = []
        bar = tqdm(pending, desc=f"{self.model} × {task.name}", disable=not self.progress, unit="run")
        for seed, n in bar:
            bar.set_postfix(n_train=n, seed=seed)
            row = self._run_recorded(task, config, n, seed, ntk)
            if store is not None:
                store.upsert(row)
            rows.append(row)
            self.grid_summary_["run"] += 1
            if row["status"] == "failed":
                self.grid_summary_["failed"] += 1
                if on_error == "raise":
                    raise FinetuneError(
                        f"Run {self.model} n_train={n} seed={seed} failed: {row['error']}"
                    )
        return rows

    # ----------------------------------------------------------------- running
    def _run_recorded(self, task, config, n, seed, ntk):
        """One run as a record; an exception becomes a 'failed' record with its error."""
        started = time.perf_counter()
        try:
            return self._run(task, config, n, seed, ntk)
        except Exception as exc:  # every failure of a run is recorded, not lost
            if _is_oom(exc):
                message = (
                    f"out of memory at `batch_size`={self.batch_size}; lower it and raise "
                    "`grad_accum` to keep the effective batch"
                )
            else:
                message = f"{type(exc).__name__}: {exc}"
            return run_record(
                "finetune", config, seed=seed, status="failed", error=message,
                model=str(self.model), dataset=task.name, n_train=n,
                params=self.params_, family=self.family_, device=str(self.device_),
                wall_seconds=time.perf_counter() - started, ntk=ntk,
            )

    def _run(self, task, config, n, seed, ntk):
        started = time.perf_counter()
        tokenized = self._tokenized(task)
        self._restore()
        train = self._train(tokenized, task.subset_indices(n, seed), seed) if n else {}
        test_loss, test_tokens = self._evaluate(tokenized.test)
        if not math.isfinite(test_loss):
            raise FinetuneError(
                f"the test loss is {test_loss} after training; lower `lr` (now {self.lr}) "
                "or use precision='fp32'."
            )
        tokens = train.get("tokens", 0)
        return run_record(
            "finetune", config, seed=seed,
            model=str(self.model), dataset=task.name, n_train=n,
            test_loss=test_loss, train_loss=train.get("train_loss"),
            steps=train.get("steps", 0), tokens=tokens, flops=6.0 * self.params_ * tokens,
            params=self.params_, trainable_params=self.trainable_params_, family=self.family_,
            wall_seconds=time.perf_counter() - started, device=str(self.device_),
            precision=self.precision_, test_tokens=test_tokens,
            val_loss=train.get("val_loss"), best_step=train.get("best_step"), ntk=ntk,
        )

    def _train(self, tokenized, indices, seed):
        import torch
        from tqdm.auto import tqdm
        from transformers import get_scheduler, set_seed

        set_seed(seed)
        features = [tokenized.pool[i] for i in indices]
        micro_per_epoch = math.ceil(len(features) / self.batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / self.grad_accum)
        total = self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch
        eval_every = self.eval_steps or steps_per_epoch
        params = [p for p in self.model_.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        schedule = get_scheduler(
            self.scheduler, optimizer,
            num_warmup_steps=math.ceil(self.warmup_ratio * total), num_training_steps=total,
        )
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            features, batch_size=self.batch_size, shuffle=True, generator=generator,
            collate_fn=self._collate, pin_memory=self._pin,
        )
        self.model_.train()
        step, tokens, loss_sum, loss_count = 0, 0, 0.0, 0
        best, best_step, bad_evals, best_state = math.inf, None, 0, None
        bar = tqdm(total=total, desc=f"n={len(features)} seed={seed}", leave=False,
                   disable=not self.progress, unit="step")
        try:
            while step < total:
                batches = iter(loader)
                for group in _groups(batches, self.grad_accum):
                    group = [self._to_device(b) for b in group]
                    group_targets = sum(_target_count(b, self.encoder_decoder_) for b in group)
                    for batch in group:
                        with self._autocast():
                            summed, count = self._loss_sum(batch)
                        if not torch.isfinite(summed):
                            raise FinetuneError(
                                f"the training loss became {summed.item()} at step {step + 1}; "
                                f"lower `lr` (now {self.lr}) or use precision='fp32'."
                            )
                        # Token-weighted over the whole optimizer step, so the
                        # gradient does not depend on how the step was split.
                        (summed / group_targets).backward()
                        loss_sum += summed.item()
                        loss_count += count
                        tokens += _token_count(batch, self.encoder_decoder_)
                    if self.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    bar.update(1)
                    if self.early_stopping_patience is not None and (step % eval_every == 0 or step == total):
                        val, _ = self._evaluate(tokenized.validation)
                        self.model_.train()
                        if val < best:
                            best, best_step, bad_evals = val, step, 0
                            best_state = self._trainable_state()
                        else:
                            bad_evals += 1
                        if bad_evals >= self.early_stopping_patience:
                            total = step  # stop: patience spent
                    if step >= total:
                        break
        finally:
            bar.close()
        if best_state is not None and best_step != step:
            self._load_trainable_state(best_state)
        return {
            "steps": step,
            "tokens": int(tokens),
            "train_loss": loss_sum / max(loss_count, 1),
            "val_loss": None if best_step is None else best,
            "best_step": best_step,
        }

    def _evaluate(self, features):
        """Token-weighted mean loss over `features` (sorted by length to pad less)."""
        import torch

        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        size = self.eval_batch_size or 2 * self.batch_size
        total, count = 0.0, 0
        self.model_.eval()
        with torch.inference_mode():
            for start in range(0, len(order), size):
                batch = self._to_device(self._collate([features[i] for i in order[start:start + size]]))
                with self._autocast():
                    summed, n = self._loss_sum(batch)
                total += summed.item()
                count += n
        if count == 0:
            raise FinetuneError("The evaluation split has no target tokens; check the max lengths.")
        return total / count, count

    def _loss_sum(self, batch):
        """Summed cross-entropy over the label tokens of a batch, and their count."""
        import torch.nn.functional as functional

        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.model_(**inputs, use_cache=False).logits
        if not self.encoder_decoder_:
            logits, labels = logits[:, :-1], labels[:, 1:]  # token t predicts t + 1
        # fp32 cross-entropy: bf16 logits would round the per-token losses.
        summed = functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
            ignore_index=-100, reduction="sum",
        )
        return summed, int((labels != -100).sum())

    # ----------------------------------------------------------------- helpers
    def _check_settings(self):
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            raise ConfigError(
                f"`model` must be a zoo name ('zoo/NAME'), a local folder or a hub id; got {self.model!r}."
            )
        if self.max_steps is None:
            _check_int("epochs", self.epochs, 1)
        else:
            _check_int("max_steps", self.max_steps, 1)
        _check_number("lr", self.lr, positive=True)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("grad_accum", self.grad_accum, 1)
        _check_number("weight_decay", self.weight_decay)
        _check_number("warmup_ratio", self.warmup_ratio)
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"`warmup_ratio` must lie in [0, 1); got {self.warmup_ratio!r}.")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"`scheduler` must be one of {SCHEDULERS}; got {self.scheduler!r}.")
        if self.max_grad_norm is not None:
            _check_number("max_grad_norm", self.max_grad_norm, positive=True)
        if not isinstance(self.lora, bool):
            raise ConfigError(f"`lora` must be True or False; got {self.lora!r}.")
        if self.lora:
            targets = self.lora_target_modules
            if targets != "all-linear" and (
                isinstance(targets, str) or not isinstance(targets, (list, tuple)) or not targets
                or not all(isinstance(t, str) for t in targets)
            ):
                raise ConfigError(
                    "`lora_target_modules` must be 'all-linear' or a list of module names such "
                    f"as ['q_proj', 'v_proj']; got {targets!r}."
                )
            _check_int("lora_r", self.lora_r, 1)
            _check_number("lora_alpha", self.lora_alpha, positive=True)
            _check_number("lora_dropout", self.lora_dropout)
        if self.early_stopping_patience is not None:
            _check_int("early_stopping_patience", self.early_stopping_patience, 1)
        if self.eval_steps is not None:
            _check_int("eval_steps", self.eval_steps, 1)
        _check_int("max_input_length", self.max_input_length, 4)
        _check_int("max_target_length", self.max_target_length, 4)
        if not isinstance(self.separator, str):
            raise ConfigError(f"`separator` must be a string; got {self.separator!r}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"`precision` must be one of {PRECISIONS}; got {self.precision!r}.")
        if self.eval_batch_size is not None:
            _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_int("ntk_probe", self.ntk_probe, 0)
        _check_int("ntk_sketch_dim", self.ntk_sketch_dim, 1)
        if self.threads is not None:
            _check_int("threads", self.threads, 1)

    def _load_fresh(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        auto = AutoModelForSeq2SeqLM if self.encoder_decoder_ else AutoModelForCausalLM
        try:
            tokenizer = AutoTokenizer.from_pretrained(self._path, revision=self.revision)
            # fp32 master weights; bf16 comes from autocast, which keeps AdamW exact.
            model = auto.from_pretrained(self._path, revision=self.revision, dtype=torch.float32)
        except Exception as exc:  # a corrupt or incompatible checkpoint
            raise FinetuneError(
                f"`model` {self.model!r} could not be loaded ({type(exc).__name__}: "
                f"{_first_line(exc)}); check that the folder holds a transformers "
                "model and tokenizer saved with save_pretrained."
            ) from None
        params = sum(p.numel() for p in model.parameters())
        decoder_start = getattr(model.config, "decoder_start_token_id", None)
        if self.encoder_decoder_ and decoder_start is None:
            raise FinetuneError(
                f"`model` {self.model!r} is an encoder-decoder without `decoder_start_token_id` "
                "in its config; set it (often the pad token id) and save the model again."
            )
        model.to(self.device_)
        if self.lora:
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(0)  # the adapters' initial weights are part of the model
            targets = self.lora_target_modules
            try:
                model = get_peft_model(model, LoraConfig(
                    r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                    target_modules=targets if isinstance(targets, str) else list(targets),
                    task_type="SEQ_2_SEQ_LM" if self.encoder_decoder_ else "CAUSAL_LM",
                ))
            except ValueError as exc:  # peft names the modules it could not find
                raise ConfigError(
                    f"`lora_target_modules` {targets!r} do not fit {self.model!r}: "
                    f"{_first_line(exc)}"
                ) from None
        # Only trainable tensors change during fine-tuning, so they are all that
        # must be restored between runs (with LoRA: the adapters only).
        initial = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }
        return {
            "model": model, "tokenizer": tokenizer, "params": params,
            "initial": initial, "decoder_start": decoder_start,
        }

    def _restore(self):
        self._load_trainable_state(self._initial)

    def _trainable_state(self):
        return {name: p.detach().clone() for name, p in self.model_.named_parameters() if p.requires_grad}

    def _load_trainable_state(self, state):
        import torch

        with torch.no_grad():
            for name, p in self.model_.named_parameters():
                if name in state:
                    p.copy_(state[name])
        self.model_.zero_grad(set_to_none=True)

    def _tokenized(self, task):
        key = (
            task.fingerprint_, id(self.tokenizer_), self.encoder_decoder_,
            self.max_input_length, self.max_target_length, self.separator,
        )
        cached = getattr(self, "_tokenized_cache", None)
        if cached is None or cached[0] != key:
            tokenized = task.tokenize(
                self.tokenizer_, encoder_decoder=self.encoder_decoder_,
                max_input_length=self.max_input_length,
                max_target_length=self.max_target_length, separator=self.separator,
            )
            self._check_lengths(tokenized, task)
            self._tokenized_cache = (key, tokenized)
        return self._tokenized_cache[1]

    def _check_lengths(self, tokenized, task):
        """Refuse sequences longer than the model's position table (a bare IndexError otherwise)."""
        limit = getattr(self._config, "max_position_embeddings", None)
        if not isinstance(limit, numbers.Integral):
            return  # relative positions (T5): no fixed limit
        splits = [tokenized.pool, tokenized.test, tokenized.validation or []]
        longest = max(
            max(len(f["input_ids"]), len(f["labels"])) for split in splits for f in split
        )
        if longest > limit:
            if self.encoder_decoder_:
                budget = "`max_input_length` and `max_target_length` are each"
            elif task.format_ == "text":
                budget = "`max_input_length` is"
            else:
                budget = "`max_input_length` + `max_target_length` is"
            raise ConfigError(
                f"`model` {self.model!r} takes at most {limit} tokens per sequence, but "
                f"{task.name!r} gives sequences of up to {longest} tokens with "
                f"`max_input_length`={self.max_input_length} and "
                f"`max_target_length`={self.max_target_length}; lower them so that "
                f"{budget} at most {limit}."
            )

    def _ntk(self, task, config):
        """NTK features of the pretrained model on `ntk_probe` pool examples.

        Cached by the run config's hash, which covers the task, the model's
        weights, the token budgets, LoRA and the sketch settings: everything the
        features depend on.
        """
        if not self.ntk_probe:
            return None
        from .ntk import compute_ntk

        cached = getattr(self, "_ntk_cache", None)
        key = config_hash(config)
        if cached is not None and cached[0] == key:
            return cached[1]
        tokenized = self._tokenized(task)
        self._restore()
        probe = [tokenized.pool[i] for i in task.subset_indices(self.ntk_probe, seed=0)]
        batch = self._to_device(self._collate(probe))
        try:
            features = compute_ntk(self.model_, batch, sketch_dim=self.ntk_sketch_dim, seed=0)
        except Exception as exc:
            raise FinetuneError(
                f"NTK features of {self.model!r} failed ({type(exc).__name__}: {_first_line(exc)}); "
                "run with `ntk_probe`=0 to skip them."
            ) from None
        self._ntk_cache = (key, features.to_dict())
        return self._ntk_cache[1]

    def _to_device(self, batch):
        return {k: v.to(self.device_, non_blocking=self._pin) for k, v in batch.items()}


def run_grid(model, dataset, sizes, seeds=(0,), store=None, *, on_error="continue",
             dataset_options=None, **settings):
    """Fine-tune `model` on every subset size × seed of `dataset` into `store`.

    Parameters
    ----------
    model : str, Path or FineTuner
        ``"zoo/NAME"``, a local folder or a hub id (then `settings` build the
        :class:`FineTuner`), or a FineTuner to reuse.
    dataset : str, Path or TaskData
        ``"zoo"``, a data file or folder, a hub id, or a TaskData.
    sizes : list of int
        Training subset sizes; 0 is the zero-shot loss.
    seeds : list of int
    store : ResultsStore, str or Path, optional
        Finished runs are skipped (resume); new runs are written as they finish.
    on_error : {"continue", "raise"}
        What to do after a failed run has been recorded.
    dataset_options : dict, optional
        Passed to :func:`lensllm_nb.data.load_task` (format, columns, split sizes).
    **settings
        :class:`FineTuner` settings (epochs, lr, batch_size, lora, device, ...).

    Returns
    -------
    pandas.DataFrame
        The runs of this call, one row each.

    Examples
    --------
    >>> from lensllm_nb import finetune, zoo          # doctest: +SKIP
    >>> finetune.run_grid("zoo/gpt2-tiny", "zoo", zoo.DEMO_SIZES, store="results.db",
    ...                   **zoo.DEMO_SETTINGS)
    """
    if isinstance(model, FineTuner):
        if settings:
            raise ConfigError(
                f"`model` is already a FineTuner; settings {sorted(settings)} cannot be "
                "applied to it. Pass them to FineTuner(...) instead."
            )
        tuner = model
    else:
        tuner = FineTuner(model, **settings)
    task = load_task(dataset, **(dataset_options or {}))
    return tuner.grid(task, sizes, seeds, store, on_error=on_error)


def resolve_device(device="auto"):
    """Return the torch device for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    ConfigError
        For an unknown name, or a GPU that torch does not see.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"`device` {device!r} is not a device name; use 'cuda' or 'cuda:0'.") from None
        if not torch.cuda.is_available():
            raise ConfigError(
                f"`device`={device!r} but torch {torch.__version__} sees no GPU; pass "
                "device='auto' or 'cpu', or install a CUDA build of torch on a GPU machine."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"`device`={device!r} but only {torch.cuda.device_count()} GPU(s) are visible."
            )
        return resolved
    raise ConfigError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")


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

    from . import zoo

    text = str(model)
    if zoo.is_zoo_name(text):
        path = zoo.resolve(text)
        return path, AutoConfig.from_pretrained(path)
    path = Path(text).expanduser()
    looks_local = text.startswith((".", "/", "~")) or path.exists()
    if looks_local:
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
        try:
            return path, AutoConfig.from_pretrained(path)
        except Exception as exc:
            raise ConfigError(
                f"`model` folder {text!r} has an unreadable config.json ({type(exc).__name__}: "
                f"{_first_line(exc)})."
            ) from None
    try:
        return text, AutoConfig.from_pretrained(text, revision=revision)
    except Exception as exc:  # hub errors come as OSError, ValueError, HTTP errors
        raise ConfigError(
            f"`model` {text!r} is neither a zoo name, a local folder nor a Hugging Face Hub "
            f"model reachable from here ({type(exc).__name__}: {_first_line(exc)}). Check the "
            f"spelling; offline, use a zoo model ({', '.join(zoo.names())}) or a local folder."
        ) from None


@contextmanager
def torch_threads(threads):
    """Run a block with `threads` torch CPU threads, then restore the previous count.

    Parameters
    ----------
    threads : int or None
        None leaves torch's setting alone.
    """
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- helpers
def _resolve_precision(precision, device):
    import torch

    if precision == "fp32":
        return "fp32"
    bf16_ok = device.type == "cpu" or torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if not bf16_ok:
            raise ConfigError("`precision`='bf16' but this GPU does not support bf16; use 'fp32'.")
        return "bf16"
    # "auto": bf16 only where the GPU has it; CPU bf16 autocast is slower than fp32.
    return "bf16" if device.type == "cuda" and bf16_ok else "fp32"


def _model_revision(path, config):
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


def _is_store(store):
    from .store import ResultsStore

    return isinstance(store, ResultsStore)


def _check_store(store):
    if store is None or _is_store(store):
        return store
    if isinstance(store, (str, Path)) and str(store):
        if Path(store).is_dir():
            raise ConfigError(f"`store` {str(store)!r} is a folder; pass a file such as results.db.")
        return store
    raise ConfigError(f"`store` must be a ResultsStore or a file path; got {type(store).__name__}.")


def _open_store(store):
    from .store import ResultsStore

    if store is None or _is_store(store):
        return store
    return ResultsStore(store)


def _check_seeds(seeds):
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"`seeds` must be a list of integers such as [0, 1]; got {seeds!r}.")
    values = list(seeds)
    if not values:
        raise ConfigError("`seeds` is empty; pass at least one seed such as [0].")
    for seed in values:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"`seeds` must hold non-negative integers; got {seed!r}.")
    return tuple(dict.fromkeys(int(s) for s in values))


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer ≥ {minimum}; got {value!r}.")


def _check_number(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ConfigError(f"`{name}` must be {kind} finite number; got {value!r}.")


def _groups(iterator, size):
    group = []
    for item in iterator:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _target_count(batch, encoder_decoder):
    labels = batch["labels"] if encoder_decoder else batch["labels"][:, 1:]
    return max(int((labels != -100).sum()), 1)


def _token_count(batch, encoder_decoder):
    tokens = int(batch["attention_mask"].sum())
    if encoder_decoder:
        tokens += int((batch["labels"] != -100).sum())
    return tokens


def _pad_id(tokenizer):
    # Padded positions are masked out of attention and loss, so any id works
    # when the tokenizer defines none.
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _is_oom(exc):
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
