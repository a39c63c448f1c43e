"""SQLite results store: one row per fine-tuning run, safe for concurrent writers.

A grid of runs (models × subset sizes × seeds) can take hours and be killed midway,
and several processes (a Dask cluster, papermill workers) may write at once. The
store makes that safe:

* one SQLite file (stdlib :mod:`sqlite3`) in WAL mode, so readers never block the
  writer and each write is one short ``BEGIN IMMEDIATE`` transaction;
* a busy timeout plus retries on ``database is locked``, so concurrent writers wait
  their turn instead of losing rows;
* an idempotent upsert keyed by (model, dataset, n_train, seed, config_hash), so a
  resumed grid rewrites nothing it already has and can ask :meth:`ResultsStore.is_done`;
* every row is validated before anything is written, so bad input leaves the file
  unchanged.

A run that fails is stored with ``status='failed'`` and its error; a later
successful run with the same key replaces it, while a failure never overwrites a
finished ('ok') run.

Example
-------
>>> from lensllm_nb.store import ResultsStore
>>> with ResultsStore("results.db") as store:               # doctest: +SKIP
...     store.upsert({"model": "gpt2", "dataset": "zoo", "n_train": 64, "seed": 0,
...                   "config_hash": "ab12", "status": "ok", "test_loss": 2.31})
...     table = store.curves()
"""

from __future__ import annotations

import json
import math
import numbers
import os
import random
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .errors import ConfigError, StoreError

__all__ = ["ResultsStore", "KEY_COLUMNS", "COLUMNS", "CURVE_COLUMNS"]

KEY_COLUMNS = ("model", "dataset", "n_train", "seed", "config_hash")

# Column name -> (SQL type, kind). The kind drives validation and decoding.
_SCHEMA = {
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
COLUMNS = tuple(_SCHEMA)
_JSON_COLUMNS = tuple(c for c, (_, kind) in _SCHEMA.items() if kind == "json")
_INTEGER_COLUMNS = tuple(c for c, (_, kind) in _SCHEMA.items() if kind in ("count", "int"))
_STATUSES = ("ok", "failed")

# The tidy curves table (see docs/CORE_API.md): required columns first, then what a
# law or a selector may use. Run metadata that is not a number per observation
# (config, versions, NTK features) stays in :meth:`ResultsStore.runs`.
CURVE_COLUMNS = (
    "model", "dataset", "n_train", "seed", "test_loss",
    "params", "family", "tokens", "flops", "train_loss", "steps", "wall_seconds",
    "config_hash", "device", "created_utc",
)
_SORT = ["model", "dataset", "n_train", "seed"]
_EXPORT_FORMATS = ("csv", "parquet")

_CREATE = (
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{name} {sql}" for name, (sql, _) in _SCHEMA.items())
    + ", PRIMARY KEY (" + ", ".join(KEY_COLUMNS) + "))"
)
# A failure must never erase a finished run: the update only fires when the new
# row is 'ok' or the stored one is not.
_UPSERT = (
    f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in KEY_COLUMNS)
    + " WHERE excluded.status = 'ok' OR runs.status != 'ok'"
)


class ResultsStore:
    """A SQLite file of fine-tuning runs that several processes can write at once.

    Parameters
    ----------
    path : str or os.PathLike
        The database file. It and its parent folders are created when missing;
        an existing store is reopened with its rows.
    timeout : float, default 60.0
        Seconds a write waits for other writers (SQLite busy timeout, then
        retries) before raising :class:`~lensllm_nb.errors.StoreError`.

    Attributes
    ----------
    path : pathlib.Path
        The database file.
    timeout : float
        The write timeout in seconds.

    Notes
    -----
    WAL mode with ``synchronous=NORMAL``: a committed row survives the process
    being killed; only an operating-system crash can lose the last commits.
    The connection is shared by the threads of one process (guarded by a lock).
    A store pickled to a worker process (Dask, ``multiprocessing`` spawn) or
    inherited through fork opens its own connection there.
    """

    def __init__(self, path, *, timeout=60.0):
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(
                f"`timeout` must be a positive number of seconds, got {timeout!r}; "
                "pass e.g. timeout=60.0."
            )
        if not isinstance(path, (str, os.PathLike)) or str(path) in ("", ":memory:"):
            raise ConfigError(
                f"`path` must be the path of a database file, got {path!r}; "
                "pass e.g. ResultsStore('results.db')."
            )
        self.path = Path(path)
        self.timeout = float(timeout)
        if self.path.is_dir():
            raise StoreError(f"`path` {str(self.path)!r} is a folder; pass a file path such as "
                             f"{str(self.path / 'results.db')!r}.")
        self._connect()

    # -- writing ---------------------------------------------------------------

    def upsert(self, row: dict) -> None:
        """Insert or update one run.

        Parameters
        ----------
        row : dict
            Required keys :data:`KEY_COLUMNS` and ``status`` (``'ok'`` or
            ``'failed'``); an ``'ok'`` row needs a finite positive ``test_loss``.
            Known optional keys are the other :data:`COLUMNS` (``config``,
            ``versions`` and ``ntk`` are dicts stored as JSON); any other key goes
            into the JSON ``extra`` column. Not modified.

        Raises
        ------
        StoreError
            When a field is missing or has a bad value (nothing is written), or the
            file stays locked longer than ``timeout``.

        Notes
        -----
        Writing the same key again replaces the stored row, except that a
        ``'failed'`` row never replaces an ``'ok'`` one. In a ``'failed'`` row a
        NaN or infinite loss (a diverged run) is stored as missing; in an ``'ok'``
        row it is an error.
        """
        self.upsert_many([row])

    def upsert_many(self, rows) -> None:
        """Insert or update several runs in one transaction (all or nothing).

        Parameters
        ----------
        rows : iterable of dict
            Rows as for :meth:`upsert`. All are validated before anything is written.
        """
        if isinstance(rows, dict):
            raise StoreError("`rows` must be a list of dicts, got a single dict; use upsert(row) "
                             "for one row or upsert_many([row, ...]).")
        values = [_encode_row(row, i) for i, row in enumerate(rows)]
        if not values:
            return

        def write(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, values)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._retrying(write)

    # -- reading ---------------------------------------------------------------

    def is_done(self, model, dataset, n_train, seed, config_hash) -> bool:
        """Return True when the run with this key finished ('ok').

        A failed or missing run returns False, so a resumed grid reruns it.
        """
        key = (str(model), str(dataset), int(n_train), int(seed), str(config_hash))
        where = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
        rows = self._retrying(lambda conn: conn.execute(
            f"SELECT 1 FROM runs WHERE {where} AND status = 'ok'", key).fetchall())
        return bool(rows)

    def runs(self, status=None):
        """Return every stored run as a DataFrame, JSON columns decoded.

        Parameters
        ----------
        status : {None, 'ok', 'failed'}
            Keep only runs with this status; None keeps all.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`COLUMNS`; ``config``, ``versions``, ``ntk`` and
            ``extra`` hold dicts (or None). Sorted by model, dataset, n_train, seed.
        """
        import pandas as pd

        if status is not None and status not in _STATUSES:
            raise ConfigError(f"`status` must be None, 'ok' or 'failed', got {status!r}.")
        query = f"SELECT {', '.join(COLUMNS)} FROM runs"
        params = ()
        if status is not None:
            query += " WHERE status = ?"
            params = (status,)
        records = self._retrying(lambda conn: conn.execute(query, params).fetchall())
        table = pd.DataFrame.from_records(records, columns=list(COLUMNS))
        for column in _JSON_COLUMNS:
            table[column] = [None if v is None else json.loads(v) for v in table[column]]
        for column in _INTEGER_COLUMNS:
            # Nullable integers: an optional count that was not recorded stays <NA>
            # instead of turning the whole column into floats.
            table[column] = table[column].astype("Int64")
        for column in ("test_loss", "train_loss", "flops", "wall_seconds"):
            table[column] = table[column].astype(float)
        for column in ("n_train", "seed"):
            table[column] = table[column].astype("int64")
        return table.sort_values(_SORT + ["config_hash"], kind="stable").reset_index(drop=True)

    def curves(self):
        """Return the tidy curves table of the finished ('ok') runs.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`CURVE_COLUMNS` (model, dataset, n_train, seed,
            test_loss, then params, family, tokens, flops, train_loss, steps,
            wall_seconds, config_hash, device, created_utc), followed by the keys
            of the ``extra`` column, sorted by model, dataset, n_train, seed.

        Notes
        -----
        Runs of the same (model, dataset, n_train, seed) under different config
        hashes are all returned; filter on ``config_hash`` before fitting.
        """
        runs = self.runs(status="ok")
        table = runs[list(CURVE_COLUMNS)].copy()
        extras = [e or {} for e in runs["extra"]]
        # Extra keys never clash with CURVE_COLUMNS: those are schema columns.
        for key in sorted({k for e in extras for k in e}):
            table[key] = [e.get(key) for e in extras]
        return table.reset_index(drop=True)

    def export(self, out, format="csv"):
        """Write the tidy curves table (:meth:`curves`) to a CSV or Parquet file.

        Parameters
        ----------
        out : str or os.PathLike
            Destination file; parent folders are created. The file is written to a
            temporary name first and renamed, so a reader never sees half a file.
        format : {'csv', 'parquet'}
            Parquet needs ``pyarrow`` (``pip install 'lensllm-nb[finetune]'``).

        Returns
        -------
        pathlib.Path
            The file written.
        """
        if format not in _EXPORT_FORMATS:
            raise ConfigError(f"`format` must be 'csv' or 'parquet', got {format!r}; "
                              "pass format='csv' or format='parquet'.")
        if format == "parquet":
            try:
                import pyarrow  # noqa: F401  (only checks it is installed)
            except ImportError:
                raise ConfigError("`format`='parquet' needs pyarrow; run `pip install pyarrow` "
                                  "or pass format='csv'.") from None
        out = Path(out)
        table = self.curves()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            if format == "csv":
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False, engine="pyarrow")
            os.replace(tmp, out)
        except (OSError, ValueError, TypeError) as exc:
            # pyarrow's ArrowInvalid / ArrowTypeError derive from ValueError / TypeError.
            raise StoreError(
                f"cannot write the export `out` {str(out)!r} as {format}: {exc}. Pass a writable "
                "file path; for Parquet every extra column needs one type (or use format='csv')."
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return out

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent). Committed rows are already on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __len__(self) -> int:
        """Number of stored runs (any status)."""
        return self._retrying(lambda conn: conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def __getstate__(self):
        # A connection cannot cross processes: a pickled store (sent to a Dask or
        # multiprocessing worker) carries its path and reopens on arrival.
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state):
        self.path, self.timeout = state["path"], state["timeout"]
        self._connect()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"ResultsStore({str(self.path)!r}, {state})"

    # -- helpers ---------------------------------------------------------------

    def _connect(self) -> None:
        """Open the connection of this process and make sure the schema exists."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE
            # so the write lock is taken up front and never upgraded mid-transaction
            # (an upgrade that loses the race fails at once, without the busy wait).
            self._conn = sqlite3.connect(self.path, timeout=self.timeout,
                                         isolation_level=None, check_same_thread=False)
            self._retrying(self._setup)
        except (sqlite3.Error, OSError, StoreError) as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            # _retrying already wraps sqlite errors; report the underlying one once.
            detail = exc.__cause__ or exc
            raise StoreError(
                f"cannot open the results store `path` {str(self.path)!r}: {detail}. "
                "Pass a writable path to a SQLite file created by ResultsStore (or a new one)."
            ) from exc

    def _setup(self, conn) -> None:
        # journal_mode=WAL is persistent in the file; setting it again is a no-op.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"the file system does not support WAL (journal mode {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CREATE)
            found = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        missing = [c for c in COLUMNS if c not in found]
        if missing:
            raise sqlite3.DatabaseError(f"its `runs` table lacks column(s) {missing}, so it is not a "
                                        "lensllm-nb results store")

    def _retrying(self, action):
        """Run ``action(conn)`` under the lock, retrying while the file is locked.

        SQLite's busy timeout already waits for the lock, but some conflicts (WAL
        recovery, checkpoints, a schema change in another process) report
        ``database is locked`` at once; those are retried with jittered backoff
        until ``timeout`` is spent.
        """
        if self._pid != os.getpid() and self._conn is not None:
            # A forked child inherited the parent's connection, which SQLite forbids
            # using (or closing) there; it opens its own instead.
            self._connect()
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        with self._lock:
            while True:
                if self._conn is None:
                    raise StoreError(f"the results store {str(self.path)!r} is closed; "
                                     "open it again with ResultsStore(path).")
                try:
                    return action(self._conn)
                except sqlite3.OperationalError as exc:
                    message = str(exc).lower()
                    if "locked" not in message and "busy" not in message:
                        raise StoreError(f"results store {str(self.path)!r}: {exc}") from exc
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"results store {str(self.path)!r} stayed locked for more than "
                            f"`timeout`={self.timeout:g} s; another process holds a long write. "
                            "Pass a larger timeout or retry later."
                        ) from exc
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                except sqlite3.Error as exc:
                    raise StoreError(f"results store {str(self.path)!r}: {exc}") from exc


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
    for column, value in row.items():
        if column == "extra":
            raise StoreError(f"{where}: `extra` is reserved for unknown keys; put those keys "
                             "directly in the row.")
        if not isinstance(column, str):
            raise StoreError(f"{where}: field names must be strings, got {column!r}.")
        if column not in _SCHEMA:
            _check_value(column, "json", value, where)
            extra[column] = value
            continue
        kind = _SCHEMA[column][1]
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
    """Return ``value`` converted to what SQLite stores, or raise StoreError."""
    def bad(expected):
        return StoreError(f"{where}: `{column}` must be {expected}, got {value!r}.")

    if kind == "status":
        if value not in _STATUSES:
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
