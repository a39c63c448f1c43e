"""Task datasets for subset fine-tuning: a fixed test split and nested training subsets.

A task is a Hugging Face ``datasets.Dataset`` in one of two formats:

``"text"``
    one ``text`` column; a causal language model learns every token.
``"pairs"``
    an ``input`` and a ``target`` column; the model learns the target tokens only
    (the prompt and the padding are masked to ``-100``), either as one causal
    sequence ``input + separator + target`` or with an encoder-decoder model.

:class:`TaskData` splits the source once into a fixed test split (and an optional
validation split) and a training *pool*. The training subset of size ``n`` for a
seed is the first ``n`` rows of a seeded permutation of the pool, so for one seed
the subset of size ``n`` is contained in the subset of size ``2n``: a curve then
measures more data, not different data.

Load a task from the Hugging Face Hub (:meth:`TaskData.from_hub`), from local
json/jsonl/csv/parquet files (:meth:`TaskData.from_files`), from memory
(:meth:`TaskData.from_records`), or from one string with :func:`load_task`
(:func:`lensllm_nb.sources.load_task` also knows ``"zoo"``, the offline zoo's task).
Tokenizing (:func:`tokenize`, :meth:`TaskData.tokenize`) runs
``datasets.Dataset.map(batched=True)``, so a large dataset is tokenized in
batches into Arrow and cached, not held as Python lists.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = [
    "TaskData",
    "TokenizedTask",
    "Collator",
    "load_task",
    "tokenize",
    "check_sizes",
    "FORMATS",
]

FORMATS = ("auto", "text", "pairs")
_SUFFIX_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SPLIT_NAMES = ("train", "test", "validation")


def check_sizes(sizes, *, limit=None, name="sizes") -> tuple:
    """Validate training-subset sizes and return them sorted without duplicates.

    Parameters
    ----------
    sizes : iterable of int
        Numbers of training examples; 0 means zero-shot (no fine-tuning).
    limit : int, optional
        The largest size allowed (the size of the training pool).
    name : str
        The argument name used in error messages.

    Returns
    -------
    tuple of int

    Raises
    ------
    ConfigError
        For an empty list, a value that is not an integer, a negative value, or a
        value above `limit`.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ConfigError(
            f"`{name}` must be a list of integers such as [0, 16, 32]; got {sizes!r}."
        )
    values = list(sizes)
    if not values:
        raise ConfigError(f"`{name}` is empty; pass at least one size such as [0, 16, 32].")
    out = []
    for value in values:
        # bool is an int subclass and 16.0 is "integral", but both are almost
        # always a mistake in a list of example counts.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(
                f"`{name}` must contain whole numbers of examples; got {value!r} "
                f"({type(value).__name__}). Use integers such as 16, 32, 64."
            )
        if value < 0:
            raise ConfigError(
                f"`{name}` must be non-negative (0 is zero-shot); got {int(value)}."
            )
        if limit is not None and value > limit:
            raise ConfigError(
                f"`{name}` asks for {int(value)} training examples but the training "
                f"split has only {limit}; use sizes up to {limit} or a larger dataset."
            )
        out.append(int(value))
    return tuple(sorted(set(out)))


class TaskData:
    """A task: a training pool, a fixed test split and nested training subsets.

    Parameters
    ----------
    train : datasets.Dataset
        The source rows. When `test` is not given, the test (and validation)
        split is carved from these rows with a permutation seeded by `split_seed`.
    test : datasets.Dataset, optional
        A separate test split; used whole.
    validation : datasets.Dataset, optional
        A separate validation split (for early stopping); used whole.
    name : str
        The dataset name written to the results store.
    format : {"auto", "text", "pairs"}
        ``"auto"`` picks ``"pairs"`` when both `input_column` and `target_column`
        exist, else ``"text"`` when `text_column` exists.
    text_column, input_column, target_column : str
        Column names of the two formats.
    test_size : int or float
        Rows carved for the test split when `test` is not given: a count, or a
        fraction of `train` in (0, 1).
    val_size : int or float
        Rows carved for the validation split when `validation` is not given
        (0: none).
    split_seed : int
        Seed of the test/validation carve; fixed so the test split never moves.

    Attributes
    ----------
    format_ : str
        The resolved format.
    pool_ : datasets.Dataset
        The training pool that subsets are drawn from. Rows whose content equals a
        test or validation row are dropped, so training never sees a test example.
    test_ : datasets.Dataset
    validation_ : datasets.Dataset or None
    n_overlap_dropped_ : int
        Training rows dropped because a test/validation row had the same content.
    fingerprint_ : str
        A hash of the split contents and settings; part of a run's config hash.
    """

    def __init__(
        self,
        train,
        test=None,
        *,
        validation=None,
        name="dataset",
        format="auto",
        text_column="text",
        input_column="input",
        target_column="target",
        test_size=0.1,
        val_size=0,
        split_seed=0,
    ):
        self.train = train
        self.test = test
        self.validation = validation
        self.name = name
        self.format = format
        self.text_column = text_column
        self.input_column = input_column
        self.target_column = target_column
        self.test_size = test_size
        self.val_size = val_size
        self.split_seed = split_seed
        # Validated eagerly: a task that cannot be used must fail where it is
        # defined, before a grid writes anything to a store.
        self._prepare()

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_records(cls, train, test=None, *, validation=None, name="memory", **settings):
        """Build a task from in-memory rows.

        Parameters
        ----------
        train, test, validation : list of dict or pandas.DataFrame
            Rows with the columns of the chosen format. Not modified.
        name : str
            The dataset name written to the results store.
        **settings
            Passed to :class:`TaskData` (format, column names, split sizes).
        """
        return cls(
            _to_dataset(train, "train"),
            None if test is None else _to_dataset(test, "test"),
            validation=None if validation is None else _to_dataset(validation, "validation"),
            name=name,
            **settings,
        )

    @classmethod
    def from_files(cls, train, test=None, *, validation=None, name=None, **settings):
        """Build a task from local json/jsonl, csv or parquet files.

        Parameters
        ----------
        train, test, validation : str or Path
            Data files; the suffix picks the reader (``.json``/``.jsonl``,
            ``.csv``, ``.parquet``).
        name : str, optional
            The dataset name written to the results store (default: `train`'s path).
        **settings
            Passed to :class:`TaskData`.
        """
        files = {"train": train, "test": test, "validation": validation}
        loaded = {
            split: _load_file(Path(path), split)
            for split, path in files.items()
            if path is not None
        }
        return cls(
            loaded["train"],
            loaded.get("test"),
            validation=loaded.get("validation"),
            name=str(train) if name is None else name,
            **settings,
        )

    @classmethod
    def from_hub(
        cls,
        path,
        *,
        config=None,
        split="train",
        test_split="auto",
        validation_split=None,
        revision=None,
        name=None,
        **settings,
    ):
        """Build a task from a dataset on the Hugging Face Hub (needs network).

        Parameters
        ----------
        path : str
            The dataset id, e.g. ``"knkarthick/dialogsum"``.
        config : str, optional
            The dataset configuration (subset) name.
        split : str
            The split that training subsets come from.
        test_split : str or None
            The split used as the test split; ``"auto"`` uses ``"test"`` when the
            dataset has one, else carves one from `split`; None always carves.
        validation_split : str, optional
            The split used for validation (early stopping).
        revision : str, optional
            A git revision of the dataset repository, for reproducibility.
        name : str, optional
            The dataset name written to the results store (default ``path`` or
            ``path:config``).
        **settings
            Passed to :class:`TaskData`.
        """
        import datasets

        try:
            # A hub dataset's loading script never runs (newer datasets run none at all).
            loaded = datasets.load_dataset(path, config, revision=revision, trust_remote_code=False)
        except Exception as exc:  # the hub raises many types; one line for users
            raise ConfigError(
                f"`dataset` {path!r} could not be loaded from the Hugging Face Hub "
                f"({type(exc).__name__}: {_first_line(exc)}). Check the name and the "
                "network, or pass a local file or directory instead."
            ) from None
        available = list(loaded.keys())

        def pick(wanted, role):
            if wanted not in loaded:
                raise ConfigError(
                    f"`{role}` {wanted!r} is not a split of {path!r}; it has {available}."
                )
            return loaded[wanted]

        train = pick(split, "split")
        if test_split == "auto":
            test_split = "test" if "test" in loaded and split != "test" else None
        test = None if test_split is None else pick(test_split, "test_split")
        validation = None if validation_split is None else pick(validation_split, "validation_split")
        default_name = path if config is None else f"{path}:{config}"
        return cls(
            train,
            test,
            validation=validation,
            name=default_name if name is None else name,
            **settings,
        )

    # ----------------------------------------------------------------- subsets
    @property
    def n_pool(self) -> int:
        """Number of rows in the training pool (the largest possible subset)."""
        return len(self.pool_)

    @property
    def columns(self) -> tuple:
        """The columns the chosen format reads."""
        if self.format_ == "text":
            return (self.text_column,)
        return (self.input_column, self.target_column)

    def check_sizes(self, sizes) -> tuple:
        """Validate subset sizes against this task's pool; see :func:`check_sizes`."""
        return check_sizes(sizes, limit=self.n_pool)

    def subset_indices(self, n, seed=0) -> np.ndarray:
        """Return the pool row positions of the training subset of size `n`.

        The positions are the first `n` entries of a permutation seeded by `seed`,
        so ``subset_indices(n, s)`` is a prefix of ``subset_indices(2 * n, s)``.
        """
        (n,) = self.check_sizes([n])
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"`seed` must be a non-negative integer; got {seed!r}.")
        return np.random.default_rng(int(seed)).permutation(self.n_pool)[:n]

    def subset(self, n, seed=0):
        """Return the training subset of size `n` for `seed` as a ``datasets.Dataset``."""
        return self.pool_.select(self.subset_indices(n, seed))

    def tokenize(self, tokenizer, **options) -> "TokenizedTask":
        """Tokenize every split once; see :func:`tokenize` for `options`."""
        settings = dict(
            format=self.format_,
            text_column=self.text_column,
            input_column=self.input_column,
            target_column=self.target_column,
            **options,
        )
        return TokenizedTask(
            pool=tokenize(self.pool_, tokenizer, **settings),
            test=tokenize(self.test_, tokenizer, **settings),
            validation=(
                None
                if self.validation_ is None
                else tokenize(self.validation_, tokenizer, **settings)
            ),
        )

    def describe(self) -> dict:
        """Return the settings that define this task (name, format, split sizes)."""
        return {
            "name": self.name,
            "format": self.format_,
            "columns": list(self.columns),
            "n_pool": self.n_pool,
            "n_test": len(self.test_),
            "n_validation": 0 if self.validation_ is None else len(self.validation_),
            "split_seed": self.split_seed,
            "fingerprint": self.fingerprint_,
        }

    def __repr__(self):
        d = self.describe()
        return (
            f"TaskData(name={d['name']!r}, format={d['format']!r}, n_pool={d['n_pool']}, "
            f"n_test={d['n_test']}, n_validation={d['n_validation']})"
        )

    # ------------------------------------------------------------------ helpers
    def _prepare(self):
        if self.format not in FORMATS:
            raise ConfigError(f"`format` must be one of {FORMATS}; got {self.format!r}.")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, numbers.Integral) \
                or self.split_seed < 0:
            raise ConfigError(
                f"`split_seed` must be a non-negative integer; got {self.split_seed!r}. "
                "Use e.g. split_seed=0."
            )
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"`name` must be a non-empty string; got {self.name!r}.")
        self.format_ = self._resolve_format(self.train, "train")
        for split, ds in (("train", self.train), ("test", self.test), ("validation", self.validation)):
            if ds is not None:
                self._check_columns(ds, split)
                self._check_values(ds, split)

        order = np.random.default_rng(self.split_seed).permutation(len(self.train))
        carved = 0
        if self.test is None:
            n_test = _split_count(self.test_size, len(self.train), "test_size")
            self.test_ = self.train.select(np.sort(order[:n_test]))
            carved = n_test
        else:
            self.test_ = self.test
        if self.validation is None:
            n_val = _split_count(self.val_size, len(self.train), "val_size", allow_zero=True)
            self.validation_ = (
                self.train.select(np.sort(order[carved:carved + n_val])) if n_val else None
            )
            carved += n_val
        else:
            self.validation_ = self.validation
        remaining = np.sort(order[carved:])
        if len(self.test_) == 0:
            raise ConfigError("The test split is empty; pass a non-empty `test` or a positive `test_size`.")

        # Content, not only row positions, must stay out of training: datasets
        # often hold exact duplicates, which would leak test examples.
        held_out = set(self._row_keys(self.test_))
        if self.validation_ is not None:
            held_out |= set(self._row_keys(self.validation_))
        keys = self._row_keys(self.train)
        keep = [i for i in remaining if keys[i] not in held_out]
        self.n_overlap_dropped_ = len(remaining) - len(keep)
        self.pool_ = self.train.select(keep)
        if len(self.pool_) == 0:
            raise ConfigError(
                f"The training pool of `{self.name}` is empty after carving the test "
                f"split ({len(self.test_)} rows) out of {len(self.train)} rows and dropping "
                f"{self.n_overlap_dropped_} rows equal to a test or validation row; use a "
                "smaller `test_size` or more (distinct) data."
            )
        self.fingerprint_ = self._fingerprint()

    def _resolve_format(self, ds, split):
        if self.format != "auto":
            return self.format
        names = list(ds.column_names)
        if self.input_column in names and self.target_column in names:
            return "pairs"
        if self.text_column in names:
            return "text"
        raise ConfigError(
            f"The {split} split of `{self.name}` has columns {names} but needs either "
            f"`{self.input_column}` and `{self.target_column}` (pairs) or "
            f"`{self.text_column}` (text); pass `input_column`/`target_column` or "
            "`text_column` naming the right columns."
        )

    def _check_columns(self, ds, split):
        names = list(ds.column_names)
        missing = [c for c in self.columns if c not in names]
        if missing:
            options = "`text_column`" if self.format_ == "text" else "`input_column`/`target_column`"
            raise ConfigError(
                f"The {split} split of `{self.name}` has no column "
                f"{', '.join(repr(c) for c in missing)} needed by the {self.format_!r} "
                f"format; it has {names}. Rename the columns or pass {options}."
            )

    def _check_values(self, ds, split):
        for column in self.columns:
            values = _column(ds, column)
            bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
            if bad:
                raise ConfigError(
                    f"Column `{column}` of the {split} split of `{self.name}` must hold "
                    f"strings; {len(bad)} rows do not (first: row {bad[0]}, value "
                    f"{values[bad[0]]!r}). Drop or convert those rows first."
                )

    def _row_keys(self, ds):
        return list(zip(*(_column(ds, c) for c in self.columns)))

    def _fingerprint(self):
        digest = hashlib.sha256()
        header = {
            "format": self.format_,
            "columns": list(self.columns),
            "split_seed": self.split_seed,
            "test_size": self.test_size,
            "val_size": self.val_size,
        }
        digest.update(json.dumps(header, sort_keys=True).encode())
        for split, ds in (("pool", self.pool_), ("test", self.test_), ("validation", self.validation_)):
            digest.update(split.encode())
            if ds is None:
                continue
            for column in self.columns:
                digest.update(json.dumps(_column(ds, column)).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TokenizedTask:
    """Token ids of every split, ready for :class:`Collator`.

    Each split is a ``datasets.Dataset`` with columns ``input_ids``, ``labels``
    and ``length`` (the longer of the two), in the row order of
    :attr:`TaskData.pool_`, ``test_`` and ``validation_``. Arrow-backed (memory
    mapped for file and hub data), so a large pool is not held as Python lists.
    """

    pool: object
    test: object
    validation: object | None

    def rows(self, split, indices=None) -> list:
        """Rows of `split` (``"pool"``, ``"test"`` or ``"validation"``) as dicts of Python lists.

        Parameters
        ----------
        split : str
        indices : sequence of int, optional
            Row positions, in the order wanted; default every row.
        """
        ds = getattr(self, split)
        if indices is not None:
            ds = ds.select([int(i) for i in indices])
        columns = ds[:] if len(ds) else {"input_ids": [], "labels": []}
        return [{"input_ids": i, "labels": l} for i, l in zip(columns["input_ids"], columns["labels"])]

    def longest(self) -> int:
        """The most tokens of any input or label sequence, over every split."""
        splits = [ds for ds in (self.pool, self.test, self.validation) if ds is not None and len(ds)]
        return max(max(ds["length"][:]) for ds in splits)


def tokenize(
    examples,
    tokenizer,
    *,
    format,
    text_column="text",
    input_column="input",
    target_column="target",
    encoder_decoder=False,
    max_input_length=128,
    max_target_length=64,
    separator="\n",
):
    """Tokenize rows into ``input_ids`` and ``labels`` with the loss mask applied.

    Parameters
    ----------
    examples : datasets.Dataset or list of dict
        Rows with the columns of `format`.
    tokenizer : transformers.PreTrainedTokenizerBase
    format : {"text", "pairs"}
    text_column, input_column, target_column : str
    encoder_decoder : bool
        For ``"pairs"``: the input goes to the encoder and the target is the
        decoder's labels. Otherwise input, `separator` and target form one causal
        sequence whose prompt labels are ``-100``.
    max_input_length : int
        Token budget of the input (the whole text for ``"text"``), special tokens
        and the separator included; the input is cut at the end.
    max_target_length : int
        Token budget of the target, the end-of-sequence token included.
    separator : str
        Text between input and target in a causal sequence.

    Returns
    -------
    datasets.Dataset or list of dict
        For a Dataset: a Dataset with columns ``input_ids``, ``labels`` and
        ``length``, made with ``Dataset.map(batched=True)`` (cached on disk for
        file and hub data, so a second call with the same tokenizer reads the
        cache). For a list: ``{"input_ids": list[int], "labels": list[int]}``
        per row. For causal models `labels` is aligned with `input_ids` (the
        model shifts); for encoder-decoder models it holds the target ids.
    """
    if format not in ("text", "pairs"):
        raise ConfigError(f"`format` must be 'text' or 'pairs'; got {format!r}.")
    for arg, value in (("max_input_length", max_input_length), ("max_target_length", max_target_length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 4:
            raise ConfigError(f"`{arg}` must be an integer of at least 4 tokens; got {value!r}.")
    if format == "text" and encoder_decoder:
        raise ConfigError(
            "The 'text' format trains a causal language model, but the model is an "
            "encoder-decoder; use an input/target dataset or a causal model."
        )
    encoder = _Encoder(
        tokenizer, format=format, columns=(text_column, input_column, target_column),
        encoder_decoder=encoder_decoder, max_input_length=max_input_length,
        max_target_length=max_target_length, separator=separator,
    )
    if isinstance(examples, list):
        out = encoder({c: _column(examples, c) for c in encoder.reads})
        return [{"input_ids": i, "labels": t} for i, t in zip(out["input_ids"], out["labels"])]
    with _quiet_datasets():
        return examples.map(encoder, batched=True, remove_columns=list(examples.column_names))


class _Encoder:
    """The batched tokenizing function of :func:`tokenize` (a ``Dataset.map`` function).

    A class rather than a closure so that ``datasets`` fingerprints it by its
    settings and the tokenizer, and reuses the cached result of an equal call.
    """

    def __init__(self, tokenizer, *, format, columns, encoder_decoder, max_input_length,
                 max_target_length, separator):
        self.tokenizer = tokenizer
        self.format = format
        self.text_column, self.input_column, self.target_column = columns
        self.encoder_decoder = encoder_decoder
        self.max_input_length = max_input_length
        self.max_target_length = max_target_length
        self.separator = separator
        self.reads = (self.text_column,) if format == "text" else (self.input_column, self.target_column)
        eos = tokenizer.eos_token_id
        self.prefix = _bos_prefix(tokenizer)
        self.suffix = [] if eos is None else [eos]
        self.sep = self._encode([separator])[0] if separator and format == "pairs" else []
        if format == "pairs" and not encoder_decoder and max_input_length - len(self.prefix) - len(self.sep) < 1:
            raise ConfigError(
                f"`max_input_length`={max_input_length} leaves no room for the input after "
                f"the separator ({len(self.sep)} tokens); raise it."
            )

    def __call__(self, batch) -> dict:
        if self.format == "text":
            budget = self.max_input_length - len(self.prefix) - len(self.suffix)
            ids = [self.prefix + row[:budget] + self.suffix for row in self._encode(batch[self.text_column])]
            return _with_length(ids, [list(row) for row in ids])
        targets = [t[: self.max_target_length - len(self.suffix)] + self.suffix
                   for t in self._encode(batch[self.target_column])]
        if self.encoder_decoder:
            # The tokenizer's own special tokens (e.g. T5's trailing </s>) belong to
            # the encoder input, so let it add them and truncate around them.
            inputs = self.tokenizer(list(batch[self.input_column]), add_special_tokens=True,
                                    truncation=True, max_length=self.max_input_length)["input_ids"]
            return _with_length(inputs, targets)
        budget = self.max_input_length - len(self.prefix) - len(self.sep)
        ids, labels = [], []
        for row, target in zip(self._encode(batch[self.input_column]), targets):
            # Cut the input, not the separator, so the model always sees where the
            # target starts.
            prompt = self.prefix + row[:budget] + self.sep
            ids.append(prompt + target)
            labels.append([-100] * len(prompt) + target)
        return _with_length(ids, labels)

    def _encode(self, texts):
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def _with_length(ids, labels):
    return {"input_ids": ids, "labels": labels, "length": [max(len(i), len(t)) for i, t in zip(ids, labels)]}


class Collator:
    """Pad tokenized rows into a batch of tensors (a ``DataLoader`` ``collate_fn``).

    Parameters
    ----------
    pad_token_id : int
        Id used to pad `input_ids` on the right; `labels` are padded with -100 and
        `attention_mask` marks real tokens.
    decoder_start_token_id : int, optional
        Set for encoder-decoder models: the batch then also holds
        ``decoder_input_ids``, the labels shifted right behind this id.
    """

    def __init__(self, pad_token_id, *, decoder_start_token_id=None):
        self.pad_token_id = pad_token_id
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, features) -> dict:
        import torch

        if not features:
            raise ConfigError("Cannot collate an empty batch.")
        batch = {
            "input_ids": _pad([f["input_ids"] for f in features], self.pad_token_id),
            "attention_mask": _pad([[1] * len(f["input_ids"]) for f in features], 0),
            "labels": _pad([f["labels"] for f in features], -100),
        }
        if self.decoder_start_token_id is not None:
            decoder = [
                [self.decoder_start_token_id] + [t if t != -100 else self.pad_token_id for t in f["labels"][:-1]]
                for f in features
            ]
            batch["decoder_input_ids"] = _pad(decoder, self.pad_token_id)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def load_task(spec, **settings) -> TaskData:
    """Resolve a dataset spec string into a :class:`TaskData`.

    Parameters
    ----------
    spec : str, Path or TaskData
        A json/jsonl/csv/parquet file; a directory holding ``train.*`` (and optionally ``test.*`` and
        ``validation.*``); else a Hugging Face Hub dataset id, optionally
        ``"id:config"``. A TaskData is returned unchanged.
    **settings
        Passed to the TaskData constructor (format, column names, split sizes).
    """
    if isinstance(spec, TaskData):
        if settings:
            raise ConfigError(
                f"`dataset` is already a TaskData; settings {sorted(settings)} cannot "
                "be applied to it. Build the TaskData with them instead."
            )
        return spec
    if not isinstance(spec, (str, Path)) or not str(spec):
        raise ConfigError(
            f"`dataset` must be a file, a directory or a hub id; got {spec!r}."
        )
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = {split: _find_split_file(path, split) for split in _SPLIT_NAMES}
        if files["train"] is None:
            raise ConfigError(
                f"`dataset` directory {text!r} has no train.json/.jsonl/.csv/.parquet; "
                f"it holds {sorted(p.name for p in path.iterdir())[:10]}."
            )
        return TaskData.from_files(
            files["train"], files["test"], validation=files["validation"], name=text, **settings
        )
    if path.suffix.lower() in _SUFFIX_BUILDERS or path.exists():
        return TaskData.from_files(path, name=text, **settings)
    hub_id, _, config = text.partition(":")
    return TaskData.from_hub(hub_id, config=config or None, name=text, **settings)


# ---------------------------------------------------------------------- helpers
def _to_dataset(rows, split):
    import datasets

    if isinstance(rows, pd.DataFrame):
        return datasets.Dataset.from_pandas(rows, preserve_index=False)
    if isinstance(rows, datasets.Dataset):
        return rows
    if isinstance(rows, (list, tuple)) and all(isinstance(r, dict) for r in rows):
        if not rows:
            raise ConfigError(f"`{split}` has no rows; pass at least one.")
        # from_list reads the rows without changing them.
        return datasets.Dataset.from_list(list(rows))
    raise ConfigError(
        f"`{split}` must be a list of dicts, a pandas DataFrame or a datasets.Dataset; "
        f"got {type(rows).__name__}."
    )


def _load_file(path, split):
    import datasets

    builder = _SUFFIX_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ConfigError(
            f"`{split}` file {str(path)!r} has suffix {path.suffix!r}; use one of "
            f"{sorted(_SUFFIX_BUILDERS)}."
        )
    if not path.is_file():
        raise ConfigError(f"`{split}` file {str(path)!r} does not exist.")
    try:
        with _quiet_datasets():
            return datasets.load_dataset(builder, data_files=str(path), split="train", trust_remote_code=False)
    except Exception as exc:  # parse errors come from pyarrow/json/csv alike
        raise ConfigError(
            f"`{split}` file {str(path)!r} could not be read as {builder} "
            f"({type(exc).__name__}: {_first_line(exc)})."
        ) from None


@contextmanager
def _quiet_datasets():
    """Hide the "Generating train split" bars of a local file load, then restore."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _find_split_file(directory, split):
    for suffix in _SUFFIX_BUILDERS:
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _split_count(size, total, name, allow_zero=False):
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise ConfigError(f"`{name}` must be a count or a fraction in (0, 1); got {size!r}.")
    if isinstance(size, numbers.Integral):
        count = int(size)
    elif 0 < size < 1:
        count = max(1, int(round(size * total)))
    else:
        raise ConfigError(f"`{name}` as a float must lie in (0, 1); got {size!r}.")
    if count < 0 or (count == 0 and not allow_zero):
        raise ConfigError(f"`{name}` must be positive; got {size!r}.")
    if count >= total:
        raise ConfigError(
            f"`{name}`={size!r} takes {count} of the {total} rows and leaves none to "
            "train on; use a smaller value."
        )
    return count


def _column(examples, column):
    """The values of one column as a list (from a Dataset or a list of dicts)."""
    if isinstance(examples, list):
        return [row[column] for row in examples]
    # datasets >= 4 returns a lazy Column; slicing it materialises a list fast.
    return examples[column][:]


def _bos_prefix(tokenizer):
    # Tokenizers that add BOS (Llama-style) do so for every sequence; reuse it so
    # fine-tuning sees the same framing as pretraining. EOS added by the
    # tokenizer is not wanted in the middle of a prompt, so only BOS is kept.
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    probe = tokenizer("", add_special_tokens=True)["input_ids"]
    return [bos] if probe[:1] == [bos] else []


def _pad(rows, value):
    width = max(len(r) for r in rows)
    return [list(r) + [value] * (width - len(r)) for r in rows]


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
