"""Task datasets for subset fine-tuning: a fixed test split and nested training subsets.

A task is a Hugging Face ``datasets.Dataset`` in one of two formats:

``"text"``
    one ``text`` column; a causal language model learns every token.
``"pairs"``
    an ``input`` and a ``target`` column; the model learns the target tokens only
    (the prompt and the padding are masked to ``-100``), either as one causal
    sequence ``input + separator + target`` or with an encoder-decoder model.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.collection.data``.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..utils.validation import check_subset_sizes, first_line
from .tokenizing import TokenizedTask, _column, _quiet_datasets, tokenize

__all__ = [
    "TaskData",
    "read_task",
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
                f"({type(exc).__name__}: {first_line(exc)}). Check the name and the "
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
        """Validate subset sizes against this task's pool; see :func:`~lensllm_nb.utils.validation.check_subset_sizes`."""
        return check_subset_sizes(sizes, limit=self.n_pool)

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


def read_task(spec, **settings) -> TaskData:
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
            f"({type(exc).__name__}: {first_line(exc)})."
        ) from None


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
