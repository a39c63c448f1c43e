"""Subset fine-tuning runs: fine-tune one candidate on n examples, measure its test loss.

A fine-tuning curve is the test loss of one pretrained model after fine-tuning on
nested training subsets of growing size n (n = 0 is the zero-shot loss).
:class:`FineTuner` holds a run's settings and session and runs a grid of sizes and
seeds into the results store; :func:`run_grid` is the same for the CLI and batches.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.collection.finetune``.
"""

from __future__ import annotations

import math
import numbers
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..errors import ConfigError, FinetuneError
from ..utils.provenance import config_hash, run_record
from ..utils.validation import first_line
from . import training
from .data import TaskData
from .device import PRECISIONS, resolve_device, resolve_precision, torch_threads
from .ntk import compute_ntk
from .resolve import load_model, load_task, model_revision, resolve_model
from .settings import SCHEDULERS, FineTuneSettings, settings_doc
from .store import ResultsStore
from .tokenizing import Collator

__all__ = [
    "FineTuner", "run_grid", "resolve_device", "resolve_model", "torch_threads",
    "SCHEDULERS", "PRECISIONS",
]

_ON_ERROR = ("continue", "raise")

# One loaded model per process: a notebook that calls run_grid for the same
# model on several datasets must not reload it. The key covers everything that
# changes the loaded object; only the latest model is kept, to bound memory.
_LOADED = {}


class FineTuner(FineTuneSettings):
    """Fine-tune one pretrained model on training subsets and measure its test loss.

    Parameters
    ----------
{parameters}

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
        self.check_settings()
        self.device_ = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, self.device_)
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
        return {
            "model": str(self.model),
            "model_revision": model_revision(self._path, self._config),
            "task": task.describe(),
            **self.result_settings(
                text_pairs_causal=task.format_ == "pairs" and not self.encoder_decoder_,
                precision=self.precision_,
            ),
        }

    def load(self) -> "FineTuner":
        """Load the model and tokenizer once and snapshot the weights to restore.

        Returns
        -------
        FineTuner
            self, with `model_`, `tokenizer_`, `params_` and `trainable_params_` set.
        """
        if getattr(self, "_path", None) is None:
            raise FinetuneError("Call check(task) (or grid/run) before load().")
        lora = self._lora()
        key = (str(self._path), self.revision, str(self.device_),
               None if lora is None else tuple((k, str(v)) for k, v in lora.items()))
        if key not in _LOADED:
            _LOADED.clear()  # free the previous model before loading the next
            _LOADED[key] = self._load_fresh(lora)
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
        return self

    def run(self, task, n_train, seed=0) -> dict:
        """Fine-tune on the subset of size `n_train` for `seed` and measure the test loss.

        Parameters
        ----------
        task : TaskData or str
            The task, or a spec for :func:`lensllm_nb.collection.resolve.load_task`.
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
            The task, or a spec for :func:`lensllm_nb.collection.resolve.load_task`.
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
        task = load_task(task)
        sizes = task.check_sizes(sizes)
        seeds = _check_seeds(seeds)
        if on_error not in _ON_ERROR:
            raise ConfigError(f"`on_error` must be one of {_ON_ERROR}; got {on_error!r}.")
        store = _check_store(store)
        config = self.config(task)
        owned = store is not None and not isinstance(store, ResultsStore)
        # A new store file is created only once the model has loaded, so a model
        # that cannot load leaves no empty store behind.
        from .store import is_url  # a database URL names no file: open it to skip stored runs

        opened = None if owned and not is_url(store) and not Path(store).exists() else _open_store(store)
        try:
            plan = [(seed, n) for seed in seeds for n in sizes]
            pending = [(seed, n) for seed, n in plan if opened is None or not opened.is_done(
                str(self.model), task.name, n, seed, config_hash(config))]
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
        test_loss, test_tokens = self._evaluate(tokenized.rows("test"))
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
        """Fine-tune on the pool rows `indices` with the shared loop; early stopping lives here."""
        import torch
        from transformers import set_seed

        set_seed(seed)
        features = tokenized.rows("pool", indices)
        steps_per_epoch = math.ceil(math.ceil(len(features) / self.batch_size) / self.grad_accum)
        total = self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch
        loader = torch.utils.data.DataLoader(
            features, batch_size=self.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed), collate_fn=self._collate,
            pin_memory=self.device_.type == "cuda",
        )
        bar = tqdm(total=total, desc=f"n={len(features)} seed={seed}", leave=False,
                   disable=not self.progress, unit="step")
        validation = tokenized.rows("validation") if self.early_stopping_patience is not None else None
        stopper = _EarlyStopping(self, validation, total, self.eval_steps or steps_per_epoch)
        optimization = training.Optimization(
            lr=self.lr, total_steps=total, warmup_steps=math.ceil(self.warmup_ratio * total),
            weight_decay=self.weight_decay, scheduler=self.scheduler, max_grad_norm=self.max_grad_norm,
        )

        def on_step(step):
            bar.update(1)
            return stopper(step)

        try:
            done = training.train(
                self.model_, training.epoch_groups(loader, self.grad_accum), optimization,
                device=self.device_, precision=self.precision_, on_step=on_step,
                hint=f"lower `lr` (now {self.lr}) or use precision='fp32'.",
            )
        finally:
            bar.close()
        stopper.restore_best(done["steps"])
        return {"steps": done["steps"], "tokens": done["tokens"], "train_loss": done["train_loss"],
                **stopper.summary()}

    def _evaluate(self, features):
        """Token-weighted mean loss over `features` (rows of input_ids and labels) and the target tokens."""
        return training.evaluate(
            self.model_, features, self._collate, batch_size=self.eval_batch_size or 2 * self.batch_size,
            device=self.device_, precision=self.precision_,
        )

    # ----------------------------------------------------------------- helpers
    def _lora(self):
        if not self.lora:
            return None
        return {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
                "target_modules": self.lora_target_modules}

    def _load_fresh(self, lora):
        model, tokenizer, decoder_start, params = load_model(
            self._path, name=self.model, revision=self.revision,
            encoder_decoder=self.encoder_decoder_, device=self.device_, lora=lora,
        )
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
        longest = tokenized.longest()
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
        cached = getattr(self, "_ntk_cache", None)
        key = config_hash(config)
        if cached is not None and cached[0] == key:
            return cached[1]
        tokenized = self._tokenized(task)
        self._restore()
        probe = tokenized.rows("pool", task.subset_indices(self.ntk_probe, seed=0))
        batch = training.to_device(self._collate(probe), self.device_)
        try:
            features = compute_ntk(self.model_, batch, sketch_dim=self.ntk_sketch_dim, seed=0)
        except Exception as exc:
            raise FinetuneError(
                f"NTK features of {self.model!r} failed ({type(exc).__name__}: {first_line(exc)}); "
                "run with `ntk_probe`=0 to skip them."
            ) from None
        self._ntk_cache = (key, features.to_dict())
        return self._ntk_cache[1]


# The Parameters section comes from the settings' one declaration (settings.py).
FineTuner.__doc__ = FineTuner.__doc__.replace("{parameters}", settings_doc())


class _EarlyStopping:
    """Evaluate the validation loss every `every` steps; stop after `patience` evaluations without gain."""

    def __init__(self, tuner, validation, total, every):
        self.tuner, self.validation, self.total, self.every = tuner, validation, total, every
        self.best, self.best_step, self.bad, self.best_state = math.inf, None, 0, None

    def __call__(self, step):
        tuner = self.tuner
        if tuner.early_stopping_patience is None or not (step % self.every == 0 or step == self.total):
            return False
        val, _ = tuner._evaluate(self.validation)
        tuner.model_.train()
        if val < self.best:
            self.best, self.best_step, self.bad = val, step, 0
            self.best_state = tuner._trainable_state()
        else:
            self.bad += 1
        return self.bad >= tuner.early_stopping_patience

    def restore_best(self, steps):
        if self.best_state is not None and self.best_step != steps:
            self.tuner._load_trainable_state(self.best_state)

    def summary(self):
        return {"val_loss": None if self.best_step is None else self.best, "best_step": self.best_step}

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
        Passed to :func:`lensllm_nb.collection.resolve.load_task` (format, columns, split sizes).
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


# ---------------------------------------------------------------------- helpers
def _check_store(store):
    if store is None or isinstance(store, ResultsStore):
        return store
    if isinstance(store, (str, Path)) and str(store):
        if Path(store).is_dir():
            raise ConfigError(f"`store` {str(store)!r} is a folder; pass a file such as results.db.")
        return store
    raise ConfigError(f"`store` must be a ResultsStore or a file path; got {type(store).__name__}.")


def _open_store(store):
    if store is None or isinstance(store, ResultsStore):
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


def _pad_id(tokenizer):
    # Padded positions are masked out of attention and loss, so any id works
    # when the tokenizer defines none.
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _is_oom(exc):
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
