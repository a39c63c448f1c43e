"""The tidy curves table: one row per fine-tuning observation.

A curve is the test loss of one model on one dataset as a function of the number of
training examples. The table holds one row per (model, dataset, n_train, seed)
observation with the columns in :data:`REQUIRED_COLUMNS`, plus optional columns
(:data:`OPTIONAL_COLUMNS`). Readers accept tidy CSV/Parquet files and the wide
layout of the benchmark of Lin et al. (2024), where column ``0`` is the zero-shot
loss.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.curves``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, CurveDataError
from ..utils.safe_output import plain_value

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "MIN_POSITIVE_SIZES",
    "rising_reason",
    "read_curves",
    "read_wide",
    "validate_curves",
    "aggregate_seeds",
    "one_dataset",
    "curve_arrays",
    "to_wide",
]

REQUIRED_COLUMNS = ("model", "dataset", "n_train", "seed", "test_loss")
OPTIONAL_COLUMNS = ("params", "family", "tokens", "flops")
# A two-phase law has up to four parameters; fewer than three points cannot
# even tell a straight line from a bend.
MIN_POSITIVE_SIZES = 3


def rising_reason(sizes, losses) -> str:
    """Why a curve is outside every scaling law's domain ('' if it is not): its loss at the
    largest size exceeds that at the smallest (a law fitted to it reports a meaningless fit)."""
    order = np.argsort(np.asarray(sizes, dtype=float))
    d, loss = np.asarray(sizes, dtype=float)[order], np.asarray(losses, dtype=float)[order]
    if loss[-1] <= loss[0]:
        return ""
    return (f"the loss rises with size ({loss[0]:.4g} at {d[0]:.0f}, {loss[-1]:.4g} at {d[-1]:.0f}); "
            "a scaling law needs a falling curve, check the data")


_WIDE_MODEL_COLUMN = "config name"
_WIDE_META = {"size": "params", "family": "family"}


def read_curves(path, *, dataset=None, drop_invalid=False) -> pd.DataFrame:
    """Read a curves file into a validated tidy table.

    Parameters
    ----------
    path : str or Path
        A tidy CSV or Parquet file (columns :data:`REQUIRED_COLUMNS`), or a CSV in
        the wide benchmark layout (first column ``config name``, one column per
        subset size), which is detected automatically.
    dataset : str, optional
        Dataset name for files that have no ``dataset`` column. Defaults to the
        file stem.
    drop_invalid : bool, default False
        Drop invalid rows (reported in a warning and ``table.attrs["dropped"]``)
        instead of raising.

    Returns
    -------
    pandas.DataFrame
        The tidy table, sorted by model, dataset, n_train and seed.

    Raises
    ------
    CurveDataError
        When the file is missing, empty or malformed, or names a column twice
        (pandas would rename the second ``x`` to ``x.1`` and it would be lost).
    """
    path = _as_path(path)
    raw = _read_raw(path)
    if _WIDE_MODEL_COLUMN in raw.columns:
        return _wide_to_tidy(raw, source=str(path), dataset=dataset or path.stem,
                             drop_invalid=drop_invalid)
    if "dataset" not in raw.columns and dataset is not None:
        raw = raw.assign(dataset=dataset)
    elif "dataset" not in raw.columns and "model" in raw.columns:
        raw = raw.assign(dataset=path.stem)
    if "seed" not in raw.columns and {"model", "n_train", "test_loss"} <= set(raw.columns):
        raw = raw.assign(seed=0)
    return validate_curves(raw, source=str(path), drop_invalid=drop_invalid)


def read_wide(path, *, dataset=None, drop_invalid=False) -> pd.DataFrame:
    """Read a CSV in the wide benchmark layout into a validated tidy table.

    Parameters
    ----------
    path : str or Path
        CSV whose first column is the model id (``config name``), followed by one
        column per subset size (``0`` is the zero-shot loss), then optionally
        ``size`` (parameter count) and ``family``.
    dataset : str, optional
        Dataset name; defaults to the file stem.
    drop_invalid : bool, default False
        See :func:`read_curves`.
    """
    path = _as_path(path)
    raw = _read_raw(path)
    if _WIDE_MODEL_COLUMN not in raw.columns:
        raw = raw.rename(columns={raw.columns[0]: _WIDE_MODEL_COLUMN})
    return _wide_to_tidy(raw, source=str(path), dataset=dataset or path.stem,
                         drop_invalid=drop_invalid)


def _as_path(path) -> Path:
    """`path` as a Path, or a `CurveDataError` for None and other non-paths."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise CurveDataError(f"`path` must be the path of a curves CSV or Parquet file, got {path!r}.")
    return Path(path)



def _read_raw(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise CurveDataError(
            f"`path` {str(path)!r} does not exist; pass the path of a curves CSV or "
            "Parquet file (or set LENSLLM_NB_DATA for the benchmark sets)."
        )
    if path.stat().st_size == 0:
        raise CurveDataError(f"{path}: the file is empty; it needs a header row and one row per observation.")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        _refuse_duplicate_names(_header_names(path, parquet), str(path))
        raw = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except CurveDataError:
        raise
    except pd.errors.EmptyDataError:
        raise CurveDataError(f"{path}: the file is empty; it needs a header row and one row per observation.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise CurveDataError(f"{path}: cannot be parsed as CSV/Parquet ({exc}).") from None
    if raw.empty:
        raise CurveDataError(f"{path}: the file has a header but no data rows.")
    return raw


def _header_names(path: Path, parquet: bool) -> list:
    """Column names as the file writes them (pandas renames a repeated CSV name ``x`` to ``x.1``)."""
    if parquet:
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    return header.iloc[0].tolist()


def _refuse_duplicate_names(names, source: str) -> None:
    """Raise `CurveDataError` when a column name (after stripping spaces) appears twice."""
    seen, repeated = set(), []
    for name in (str(n).strip() for n in names):
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise CurveDataError(
            f"{source}: column name(s) {repeated} appear more than once in the header; which one holds the "
            "data is ambiguous, so nothing is read. Rename or remove the repeated column(s)."
        )


def _wide_to_tidy(raw: pd.DataFrame, *, source: str, dataset: str, drop_invalid: bool) -> pd.DataFrame:
    size_columns = [c for c in raw.columns if str(c).strip().lstrip("-").isdigit()]
    if not size_columns:
        raise CurveDataError(
            f"{source}: no subset-size columns found in the wide layout; expected integer "
            f"column names such as 0, 200, 400, got {list(raw.columns)}."
        )
    # "200" and "0200" are one size: two columns of it would be two readings of one observation.
    _refuse_duplicate_names([int(str(c).strip()) for c in size_columns], f"{source} (subset-size columns)")
    bad = [c for c in size_columns if int(str(c).strip()) < 0]
    if bad:
        raise CurveDataError(f"{source}: column {bad[0]!r} is a negative subset size; sizes must be ≥ 0.")
    meta = [c for c in _WIDE_META if c in raw.columns]
    tidy = raw.melt(id_vars=[_WIDE_MODEL_COLUMN, *meta], value_vars=size_columns,
                    var_name="n_train", value_name="test_loss")
    # Keep the source row of every melted value so errors point at the file row.
    tidy["_row"] = np.tile(np.arange(len(raw)) + 2, len(size_columns))
    tidy["_column"] = tidy["n_train"].astype(str)
    tidy = tidy.rename(columns={_WIDE_MODEL_COLUMN: "model", **_WIDE_META})
    tidy["n_train"] = tidy["n_train"].map(lambda c: int(str(c).strip()))
    tidy["dataset"] = dataset
    tidy["seed"] = 0
    tidy, not_measured = _drop_empty_cells(tidy, source)
    table = validate_curves(tidy, source=source, drop_invalid=drop_invalid)
    table.attrs["not_measured"] = not_measured
    return table


def _drop_empty_cells(tidy: pd.DataFrame, source: str):
    """Omit the wide layout's empty cells: a size a model was not run at, reported in a warning.

    A wide table has a cell for every (model, size) pair, so an empty one is no observation
    (the tidy layout would have no row), not an invalid one.
    """
    empty = tidy["test_loss"].isna().to_numpy()
    if not empty.any():
        return tidy, []
    cells = [f"row {row}, column {column!r}" for row, column in
             sorted(zip(tidy.loc[empty, "_row"], tidy.loc[empty, "_column"]), key=lambda cell: cell[0])]
    warnings.warn(f"{source}: read {len(cells)} empty cell(s) of the wide layout as not measured: "
                  + "; ".join(cells[:5]) + ("; ..." if len(cells) > 5 else ""), UserWarning, stacklevel=3)
    return tidy[~empty], cells


def validate_curves(table, *, source="<table>", drop_invalid=False) -> pd.DataFrame:
    """Check a tidy table and return a clean, typed, sorted copy.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns :data:`REQUIRED_COLUMNS` plus optional ones. Not modified.
    source : str
        Name used in error messages (usually the file path).
    drop_invalid : bool, default False
        Drop invalid rows instead of raising; dropped rows are reported in a
        :class:`UserWarning` and kept in ``result.attrs["dropped"]``.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    CurveDataError
        For missing or repeated columns, non-numeric, NaN, infinite or non-positive
        losses, negative or non-integer sizes, sizes or seeds beyond the 64-bit integer
        range, conflicting duplicates, an empty table, or a
        model with fewer than :data:`MIN_POSITIVE_SIZES` positive sizes.
    """
    if not isinstance(table, pd.DataFrame):
        raise CurveDataError(f"{source}: `table` must be a pandas DataFrame, got {type(table).__name__}.")
    _refuse_duplicate_names(table.columns, source)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CurveDataError(
            f"{source}: missing column(s) {missing}; a curves table needs columns "
            f"{list(REQUIRED_COLUMNS)} (found {list(table.columns)})."
        )
    if table.empty:
        raise CurveDataError(f"{source}: the table has no rows.")
    df = table.copy()
    if "_row" not in df.columns:
        # File rows are 1-based and the header is row 1.
        df["_row"] = np.arange(len(df)) + 2
    problems = _row_problems(df)
    dropped = []
    if problems:
        if not drop_invalid:
            row, column, message = problems[0]
            more = f" ({len(problems) - 1} more problem(s) after this one)" if len(problems) > 1 else ""
            raise CurveDataError(
                f"{source}: row {row}, column {column!r}: {message}{more}. Fix the file, "
                "or pass drop_invalid=True (CLI: --drop-invalid) to drop invalid rows (they are reported)."
            )
        bad_rows = {row for row, _, _ in problems}
        dropped = [f"row {row}, column {column!r}: {message}" for row, column, message in problems]
        df = df[~df["_row"].isin(bad_rows)]
    df["n_train"] = pd.to_numeric(df["n_train"]).astype(np.int64)
    df["seed"] = pd.to_numeric(df["seed"]).astype(np.int64)
    df["test_loss"] = pd.to_numeric(df["test_loss"]).astype(float)
    df["model"] = df["model"].astype(str)
    df["dataset"] = df["dataset"].astype(str)
    _check_duplicates(df, source)
    df, short = _check_curve_lengths(df, source, drop_invalid)
    dropped += short
    if df.empty:
        raise CurveDataError(f"{source}: no valid rows are left after dropping invalid ones: {dropped[:3]}.")
    df = df.drop(columns=[c for c in ("_row", "_column") if c in df.columns])
    df = df.sort_values(["model", "dataset", "n_train", "seed"], kind="stable").reset_index(drop=True)
    df = df[[*REQUIRED_COLUMNS, *[c for c in df.columns if c not in REQUIRED_COLUMNS]]]
    if dropped:
        warnings.warn(f"{source}: dropped {len(dropped)} invalid observation(s): " + "; ".join(dropped[:5]),
                      UserWarning, stacklevel=2)
    df.attrs["dropped"] = dropped
    df.attrs["source"] = source
    return df


def _row_problems(df: pd.DataFrame) -> list:
    """Return (file row, column, message) for every invalid cell, in row order."""
    rows = df["_row"].to_numpy()
    loss_col = df["_column"].to_numpy() if "_column" in df.columns else np.full(len(df), "test_loss")
    size_col = df["_column"].to_numpy() if "_column" in df.columns else np.full(len(df), "n_train")
    raw_loss, raw_size, raw_seed = df["test_loss"].to_numpy(), df["n_train"].to_numpy(), df["seed"].to_numpy()
    loss = pd.to_numeric(df["test_loss"], errors="coerce").to_numpy(dtype=float)
    size = pd.to_numeric(df["n_train"], errors="coerce").to_numpy(dtype=float)
    seed = pd.to_numeric(df["seed"], errors="coerce").to_numpy(dtype=float)
    checks = [
        (df["model"].isna().to_numpy() | (df["model"].astype(str).str.strip() == "").to_numpy(),
         None, lambda i: "the model name is empty", "model"),
        (df["dataset"].isna().to_numpy() | (df["dataset"].astype(str).str.strip() == "").to_numpy(),
         None, lambda i: "the dataset name is empty", "dataset"),
        (np.isnan(loss) & pd.isna(raw_loss), loss_col, lambda i: "test loss is missing (NaN)", None),
        (np.isnan(loss) & ~pd.isna(raw_loss), loss_col,
         lambda i: f"test loss is not a number ({plain_value(raw_loss[i])!r})", None),
        (np.isinf(loss), loss_col, lambda i: f"test loss is infinite ({loss[i]})", None),
        (np.isfinite(loss) & (loss <= 0), loss_col, lambda i: f"test loss must be positive, got {loss[i]}", None),
        (~np.isfinite(size), size_col, lambda i: f"n_train is not a number ({plain_value(raw_size[i])!r})", None),
        (np.isfinite(size) & (size < 0), size_col, lambda i: f"n_train must be ≥ 0, got {size[i]:g}", None),
        (np.isfinite(size) & (size >= 0) & (size != np.floor(size)), size_col,
         lambda i: f"n_train must be an integer, got {size[i]:g}", None),
        (_beyond_int64(df["n_train"]), size_col,
         lambda i: f"n_train is too large ({plain_value(raw_size[i])!r}); it must be below 2**63", None),
        (~np.isfinite(seed) | (seed != np.floor(seed)), None,
         lambda i: f"seed must be an integer, got {plain_value(raw_seed[i])!r}", "seed"),
        (_beyond_int64(df["seed"]), None,
         lambda i: f"seed is outside the 64-bit integer range ({plain_value(raw_seed[i])!r})", "seed"),
    ]
    problems = []
    for bad, columns, message, fixed_column in checks:
        for i in np.flatnonzero(bad):
            problems.append((int(rows[i]), str(fixed_column or columns[i]), message(i)))
    return sorted(problems, key=lambda p: p[0])


def _beyond_int64(column: pd.Series) -> np.ndarray:
    """Mask of the integral values of `column` that an int64 cannot hold.

    Checked before the cast: numpy would wrap 2**63 or 1e30 to -2**63 without a word.
    Unsigned columns are compared exactly; floats (and ints too big for any integer
    dtype, which pandas reads as floats) against ±2**63.
    """
    numeric = pd.to_numeric(column, errors="coerce")
    if pd.api.types.is_unsigned_integer_dtype(numeric):
        return numeric.to_numpy() > np.iinfo(np.int64).max
    if pd.api.types.is_integer_dtype(numeric):
        return np.zeros(len(numeric), dtype=bool)
    values = numeric.to_numpy(dtype=float)
    return np.isfinite(values) & ((values >= 2.0 ** 63) | (values < -(2.0 ** 63)))


def _check_duplicates(df: pd.DataFrame, source: str) -> None:
    key = ["model", "dataset", "n_train", "seed"]
    dup = df[df.duplicated(key, keep=False)]
    if dup.empty:
        return
    for _, group in dup.groupby(key, sort=False):
        if group["test_loss"].nunique() > 1:
            rows = group["_row"].tolist()
            model, dataset, n, seed = group.iloc[0][key]
            raise CurveDataError(
                f"{source}: rows {rows}, column 'test_loss': conflicting duplicates for model {model!r}, "
                f"dataset {dataset!r}, n_train {n}, seed {seed} (losses {group['test_loss'].tolist()}); "
                "keep one observation per key or give repeated runs different seeds."
            )


def _check_curve_lengths(df: pd.DataFrame, source: str, drop_invalid: bool):
    """Drop exact duplicates and check every curve has enough positive sizes."""
    df = df.drop_duplicates(["model", "dataset", "n_train", "seed"])
    counts = df[df["n_train"] > 0].groupby(["model", "dataset"])["n_train"].nunique()
    all_curves = df.groupby(["model", "dataset"]).size().index
    counts = counts.reindex(all_curves, fill_value=0)
    short = counts[counts < MIN_POSITIVE_SIZES]
    if short.empty:
        return df, []
    messages = [f"model {m!r} on {d!r} has {c} positive size(s)" for (m, d), c in short.items()]
    if not drop_invalid:
        (model, dataset), count = next(iter(short.items()))
        rows = df.loc[(df["model"] == model) & (df["dataset"] == dataset), "_row"].tolist()
        raise CurveDataError(
            f"{source}: rows {rows}, column 'n_train': model {model!r} on dataset {dataset!r} has only "
            f"{count} positive training size(s); a curve needs at least {MIN_POSITIVE_SIZES} to fit a law. "
            "Add sizes or pass drop_invalid=True (CLI: --drop-invalid) to drop the model."
        )
    keep = ~df.set_index(["model", "dataset"]).index.isin(short.index)
    return df[keep], messages


def aggregate_seeds(table) -> pd.DataFrame:
    """Average repeated seeds: one row per (model, dataset, n_train).

    Parameters
    ----------
    table : pandas.DataFrame
        A tidy curves table (validated or not; it is validated here).

    Returns
    -------
    pandas.DataFrame
        Columns model, dataset, n_train, test_loss (mean over seeds),
        test_loss_std (sample std, 0 for a single seed), n_seeds, and the
        per-model columns ``params`` and ``family`` when present.
    """
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    grouped = df.groupby(["model", "dataset", "n_train"], sort=True)["test_loss"]
    out = grouped.agg(test_loss="mean", test_loss_std="std", n_seeds="count").reset_index()
    out["test_loss_std"] = out["test_loss_std"].fillna(0.0)
    for column in ("params", "family", "tokens", "flops"):
        if column in df.columns:
            first = df.groupby(["model", "dataset", "n_train"], sort=True)[column].first().reset_index(drop=True)
            out[column] = first.to_numpy()
    return out


def curve_arrays(table, model, dataset=None, *, max_train=None, positive_only=True):
    """Return the (sizes, losses) arrays of one curve, seeds averaged.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table.
    model : str
        Model name.
    dataset : str, optional
        Needed when the table holds several datasets.
    max_train : int, optional
        Keep only sizes ≤ ``max_train`` (the visible part of a curve).
    positive_only : bool, default True
        Leave out the zero-shot point n_train = 0.
    """
    rows = table[table["model"] == model]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    elif rows["dataset"].nunique() > 1:
        raise CurveDataError(
            f"`dataset` is needed: model {model!r} has curves on {sorted(rows['dataset'].unique())}."
        )
    if rows.empty:
        raise CurveDataError(f"`model` {model!r} is not in the table; models: {sorted(table['model'].unique())[:10]}.")
    if max_train is not None:
        rows = rows[rows["n_train"] <= max_train]
    if positive_only:
        rows = rows[rows["n_train"] > 0]
    mean = rows.groupby("n_train")["test_loss"].mean()
    return mean.index.to_numpy(dtype=float), mean.to_numpy(dtype=float)


def to_wide(table) -> pd.DataFrame:
    """Pivot a tidy table to one row per (model, dataset), one column per size.

    Seeds are averaged. Useful for display and for vectorized selectors.
    """
    agg = aggregate_seeds(table)
    wide = agg.pivot_table(index=["model", "dataset"], columns="n_train", values="test_loss")
    wide.columns = [int(c) for c in wide.columns]
    return wide


def one_dataset(table, dataset=None):
    """Keep the rows of one dataset of a validated table.

    Parameters
    ----------
    table : pandas.DataFrame
        A validated tidy table (see :func:`validate_curves`).
    dataset : str, optional
        Required when the table holds several datasets.

    Returns
    -------
    (pandas.DataFrame, str)
        The rows of the dataset and its name.

    Raises
    ------
    ConfigError
        When `dataset` is missing for a table of several datasets, or is not in it.
    """
    datasets = sorted(map(str, table["dataset"].unique()))
    if dataset is None:
        if len(datasets) > 1:
            raise ConfigError(f"the table holds several datasets {datasets}; pass `dataset=` "
                              "(CLI: `--dataset`) to choose one.")
        dataset = datasets[0]
    elif str(dataset) not in datasets:
        raise ConfigError(f"`dataset` {plain_value(dataset)!r} is not in the table; choose one of {datasets}.")
    return table[table["dataset"] == str(dataset)], str(dataset)
