"""The one schema every store backend keeps: columns, row validation, decoding.

A run is one row keyed by (model, dataset, n_train, seed, config_hash). Rows are
validated and encoded here, before any backend sees them, so the SQLite file and a
database server hold exactly the same values and a bad row writes nothing
anywhere. Reading back goes through :func:`runs_frame`, so both backends return
the same DataFrame.
"""

from __future__ import annotations

import json
import math
import numbers
from datetime import datetime, timezone

from ...errors import ConfigError, StoreError
from ...utils.safe_output import mask_secrets

__all__ = ["KEY_COLUMNS", "COLUMNS", "CURVE_COLUMNS", "SCHEMA", "STATUSES",
           "encode_rows", "runs_frame", "curves_frame"]

KEY_COLUMNS = ("model", "dataset", "n_train", "seed", "config_hash")

# Column name -> (SQL type, kind). The kind drives validation, decoding and the
# column type of a server table (INTEGER columns become BIGINT there: parameter
# counts pass 2**31).
SCHEMA = {
    "model": ("TEXT NOT NULL", "name"),
    "dataset": ("TEXT NOT NULL", "name"),
    "n_train": ("INTEGER NOT NULL", "count"),
    "seed": ("INTEGER NOT NULL", "int"),
    "config_hash": ("TEXT NOT NULL", "name"),
    "status": ("TEXT NOT NULL", "status"),
    "test_loss": ("REAL", "loss"),
    "train_loss": ("REAL", "float"),
    "steps": ("INTEGER", "count"),
    "tokens": ("INTEGER", "count"),
    "flops": ("REAL", "nonneg"),
    "params": ("INTEGER", "count"),
    "family": ("TEXT", "text"),
    "wall_seconds": ("REAL", "nonneg"),
    "device": ("TEXT", "text"),
    "error": ("TEXT", "text"),
    "config": ("TEXT", "json"),
    "versions": ("TEXT", "json"),
    "ntk": ("TEXT", "json"),
    "extra": ("TEXT", "json"),
    "created_utc": ("TEXT", "text"),
}
COLUMNS = tuple(SCHEMA)
STATUSES = ("ok", "failed")
_JSON_COLUMNS = tuple(c for c, (_, kind) in SCHEMA.items() if kind == "json")
_INTEGER_COLUMNS = tuple(c for c, (_, kind) in SCHEMA.items() if kind in ("count", "int"))
_FLOAT_COLUMNS = tuple(c for c, (_, kind) in SCHEMA.items() if kind in ("loss", "float", "nonneg"))

# The tidy curves table (see docs/CORE_API.md): required columns first, then what a
# law or a selector may use. Run metadata that is not a number per observation
# (config, versions, NTK features) stays in ResultsStore.runs().
CURVE_COLUMNS = (
    "model", "dataset", "n_train", "seed", "test_loss",
    "params", "family", "tokens", "flops", "train_loss", "steps", "wall_seconds",
    "config_hash", "device", "created_utc",
)
_SORT = ["model", "dataset", "n_train", "seed", "config_hash"]


def encode_rows(rows) -> list:
    """Validate rows and return their values as tuples in :data:`COLUMNS` order.

    Raises
    ------
    StoreError
        Naming the row and field, before anything is written.
    """
    if isinstance(rows, dict):
        raise StoreError("`rows` must be a list of dicts, got a single dict; use upsert(row) "
                         "for one row or upsert_many([row, ...]).")
    return [_encode_row(row, i) for i, row in enumerate(rows)]


def runs_frame(records):
    """Return stored records (tuples in :data:`COLUMNS` order) as the typed runs table."""
    import pandas as pd

    # dtype=object: text columns keep None for a missing value (never NaN, whatever
    # string dtype pandas would infer), so both backends give identical tables.
    table = pd.DataFrame(list(records), columns=list(COLUMNS), dtype=object)
    for column in _JSON_COLUMNS:
        table[column] = [None if v is None else json.loads(v) for v in table[column]]
    for column in _INTEGER_COLUMNS:
        # Nullable integers: an optional count that was not recorded stays <NA>
        # instead of turning the whole column into floats.
        table[column] = table[column].astype("Int64")
    for column in _FLOAT_COLUMNS:
        table[column] = table[column].astype(float)
    for column in ("n_train", "seed"):
        table[column] = table[column].astype("int64")
    return table.sort_values(_SORT, kind="stable").reset_index(drop=True)


def curves_frame(runs, config="latest"):
    """Return the tidy curves table of finished runs, one config per curve by default.

    Parameters
    ----------
    runs : pandas.DataFrame
        The 'ok' runs (:func:`runs_frame`).
    config : str, default "latest"
        ``"latest"``: for each (model, dataset) only the runs of the config that
        was run last, so re-runs with another config never give a curve two
        values per (n_train, seed); ``"all"``: every config; otherwise a
        ``config_hash`` (or a unique prefix of one) to keep.
    """
    runs = _select_config(runs, config)
    table = runs[list(CURVE_COLUMNS)].copy()
    # The learning rate with the steps: the LensLLM law's NTK time is lr × steps.
    table["lr"] = [(c or {}).get("lr") if isinstance(c, dict) else None for c in runs["config"]]
    extras = [e or {} for e in runs["extra"]]
    # Extra keys never clash with CURVE_COLUMNS: those are schema columns.
    for key in sorted({k for e in extras for k in e}):
        table[key] = [e.get(key) for e in extras]
    return table.reset_index(drop=True)


def _select_config(runs, config):
    if not isinstance(config, str) or not config:
        raise ConfigError(f"`config` must be 'latest', 'all' or a config hash, got {config!r}.")
    if config == "all" or runs.empty:
        return runs
    if config != "latest":
        hashes = sorted(set(runs["config_hash"]))
        chosen = [h for h in hashes if h.startswith(config)]
        if len(chosen) != 1:
            raise ConfigError(f"`config` {config!r} matches {len(chosen)} of the stored config "
                              f"hashes {hashes}; pass one of them, 'latest' or 'all'.")
        return runs[runs["config_hash"] == chosen[0]]
    # A config's time is that of its newest run; ties go to the larger hash so the
    # choice never depends on row order.
    last = (runs.groupby(["model", "dataset", "config_hash"], sort=True)["created_utc"]
            .max().fillna("").reset_index()
            .sort_values(["created_utc", "config_hash"], kind="stable")
            .groupby(["model", "dataset"]).tail(1))
    keep = set(zip(last["model"], last["dataset"], last["config_hash"]))
    mask = [key in keep for key in zip(runs["model"], runs["dataset"], runs["config_hash"])]
    return runs[mask]


def _encode_row(row, index) -> tuple:
    """Validate one row and return its values in :data:`COLUMNS` order."""
    where = f"row {index}"
    if not isinstance(row, dict):
        raise StoreError(f"{where}: a run must be a dict, got {type(row).__name__}; "
                         "pass {'model': ..., 'dataset': ..., ...}.")
    missing = [c for c in (*KEY_COLUMNS, "status") if c not in row or row[c] is None]
    if missing:
        raise StoreError(f"{where}: missing required field(s) {missing}; every run needs "
                         f"{list(KEY_COLUMNS) + ['status']}.")
    failed = row["status"] == "failed"
    values, extra = {}, {}
    # No secret is stored (argv, error, config): key columns stay as given, so is_done finds the run.
    row = {**mask_secrets({c: v for c, v in row.items() if c not in KEY_COLUMNS}),
           **{c: row[c] for c in KEY_COLUMNS}}
    for column, value in row.items():
        if column == "extra":
            raise StoreError(f"{where}: `extra` is reserved for unknown keys; put those keys "
                             "directly in the row.")
        if not isinstance(column, str):
            raise StoreError(f"{where}: field names must be strings, got {column!r}.")
        if column not in SCHEMA:
            _check_value(column, "json", value, where)
            extra[column] = value
            continue
        kind = SCHEMA[column][1]
        if failed and kind in ("loss", "float", "nonneg") and _is_nonfinite(value):
            # A diverged run reports a NaN loss; the failure itself is the record,
            # so the number is stored as missing rather than refusing the row.
            value = None
        values[column] = _check_value(column, kind, value, where)
    if values["status"] == "ok" and values.get("test_loss") is None:
        raise StoreError(f"{where}: an 'ok' run needs `test_loss` (a finite positive float), "
                         f"got {row.get('test_loss')!r}; store the run with status='failed' "
                         "and its `error` instead.")
    values["extra"] = _check_value("extra", "json", extra, where) if extra else None
    if values.get("created_utc") is None:
        values["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return tuple(values.get(c) for c in COLUMNS)


def _check_value(column, kind, value, where):
    """Return ``value`` converted to what the store keeps, or raise StoreError."""
    def bad(expected):
        return StoreError(f"{where}: `{column}` must be {expected}, got {value!r}.")

    if kind == "status":
        if value not in STATUSES:
            raise bad("'ok' or 'failed'")
        return value
    if kind == "name":
        if not isinstance(value, str) or not value.strip():
            raise bad("a non-empty string")
        return value
    if value is None:
        return None
    if kind == "text":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind in ("count", "int"):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise bad("an integer" if kind == "int" else "an integer ≥ 0")
        if kind == "count" and value < 0:
            raise bad("an integer ≥ 0")
        return int(value)
    if kind in ("loss", "float", "nonneg"):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise bad("a finite number")
        if kind == "loss" and value <= 0:
            raise bad("a finite positive number")
        if kind == "nonneg" and value < 0:
            raise bad("a finite number ≥ 0")
        return float(value)
    # kind == "json": the known JSON columns hold dicts; unknown keys any JSON value.
    if column in _JSON_COLUMNS and column != "extra" and not isinstance(value, dict):
        raise bad("a dict (stored as JSON)")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: `{column}` cannot be stored as JSON ({exc}); use plain "
                         "str/int/float/list/dict values with finite numbers.") from None


def _is_nonfinite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value)


def _json_default(value):
    # numpy scalars and arrays are common in run records; store them as plain JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serialisable")
