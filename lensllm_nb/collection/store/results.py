"""ResultsStore: one interface to the runs of a grid, in a SQLite file or on a database server."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from ...errors import ConfigError, StoreError
from ...utils.safe_output import mask_secrets
from .location import is_url, mask_url, sqlite_path
from .schema import STATUSES, curves_frame, encode_rows, runs_frame

__all__ = ["ResultsStore"]

_EXPORT_FORMATS = ("csv", "parquet")


def _masked(table):
    """Return `table` with the secrets of its text columns (argv, error, ...) masked."""
    table = table.copy()
    for column in table.select_dtypes(exclude="number").columns:
        table[column] = table[column].map(mask_secrets)
    return table


class ResultsStore:
    """Fine-tuning runs that many processes, or many machines, can write at once.

    Parameters
    ----------
    store : str or os.PathLike
        A SQLite file path (default backend, one machine; created with its folders
        when missing) or a database URL such as
        ``postgresql://user@dbhost:5432/lensllm`` (many machines; the ``runs`` table
        is created when missing). ``sqlite:///path.db`` is the same as the path.
    timeout : float, default 60.0
        Seconds a write waits for other writers (SQLite) or for an unreachable
        server (URL) before raising :class:`~lensllm_nb.errors.StoreError`.
    readonly : bool, default False
        Open an existing store for reading only (what ``export`` does): nothing is
        created or written, a file that is not a results store is refused
        untouched, and a damaged SQLite file is read as far as it can be.

    Attributes
    ----------
    path : pathlib.Path or None
        The SQLite file; None for a database URL.
    location : str
        The file path, or the URL with its password masked: safe to print.
    timeout : float
    readonly : bool

    Notes
    -----
    Both backends keep one schema and the same idempotent upsert keyed by (model,
    dataset, n_train, seed, config_hash) (``INSERT ... ON CONFLICT``), so a resumed
    grid rewrites nothing it has and a retried job never duplicates a row. SQLite
    is refused on a network filesystem (its WAL locking needs one host); use a URL
    there. A store pickled to a worker process (Dask, spawn) or inherited through
    fork opens its own connection there.

    Examples
    --------
    >>> with ResultsStore("results.db") as store:               # doctest: +SKIP
    ...     store.upsert({"model": "gpt2", "dataset": "zoo", "n_train": 64, "seed": 0,
    ...                   "config_hash": "ab12", "status": "ok", "test_loss": 2.31})
    ...     table = store.curves()
    """

    def __init__(self, store, *, timeout=60.0, readonly=False):
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(
                f"`timeout` must be a positive number of seconds, got {timeout!r}; "
                "pass e.g. timeout=60.0."
            )
        if not isinstance(readonly, bool):
            raise ConfigError(f"`readonly` must be True or False, got {readonly!r}.")
        self._target = store
        self.timeout = float(timeout)
        self.readonly = readonly
        self._open()

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
            When a field is missing or has a bad value (nothing is written), the
            store is read-only, or it stays locked / unreachable longer than
            ``timeout`` (the run is then not stored).

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
        values = encode_rows(rows)
        if self.readonly:
            raise StoreError(f"the results store {self.location!r} was opened with readonly=True; "
                             "open it with ResultsStore(store) to write.")
        if values:
            self._backend.upsert(values)

    # -- reading ---------------------------------------------------------------

    def is_done(self, model, dataset, n_train, seed, config_hash) -> bool:
        """Return True when the run with this key finished ('ok').

        A failed or missing run returns False, so a resumed grid reruns it.
        """
        return self._backend.is_done((str(model), str(dataset), int(n_train), int(seed), str(config_hash)))

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
            ``extra`` hold dicts (or None). Sorted by model, dataset, n_train,
            seed, config_hash.
        """
        if status is not None and status not in STATUSES:
            raise ConfigError(f"`status` must be None, 'ok' or 'failed', got {status!r}.")
        return runs_frame(self._backend.fetch(status))

    def curves(self, config="latest"):
        """Return the tidy curves table of the finished ('ok') runs.

        Parameters
        ----------
        config : str, default "latest"
            Which runs make a curve when a (model, dataset) was run under several
            configs: ``"latest"`` keeps the config that ran last, so the table
            has one loss per (model, dataset, n_train, seed) and ``fit`` and
            ``benchmark`` accept it; ``"all"`` keeps every config; a
            ``config_hash`` (or a unique prefix) keeps that config.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`CURVE_COLUMNS` (model, dataset, n_train, seed,
            test_loss, then params, family, tokens, flops, train_loss, steps,
            wall_seconds, config_hash, device, created_utc), followed by the keys
            of the ``extra`` column, sorted by model, dataset, n_train, seed.
        """
        return curves_frame(self.runs(status="ok"), config)

    @property
    def unreadable(self) -> list:
        """What the last read of a damaged SQLite file could not read (empty: all read)."""
        return list(self._backend.unreadable)

    def export(self, out, format="csv", config="latest"):
        """Write the tidy curves table (:meth:`curves`) to a CSV or Parquet file.

        Parameters
        ----------
        out : str or os.PathLike
            Destination file; parent folders are created. The file is written to a
            temporary name first and renamed, so a reader never sees half a file.
        format : {'csv', 'parquet'}
            Parquet needs ``pyarrow`` (``pip install 'lensllm-nb[finetune]'``).
        config : str, default "latest"
            As in :meth:`curves`.

        Returns
        -------
        pathlib.Path
            The file written. After it, :attr:`unreadable` lists what a damaged
            file could not give.
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
        # Rows written before secrets were masked on storing are masked here.
        table = _masked(self.curves(config))
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
        """Close the connection (idempotent). Committed rows are already stored."""
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __len__(self) -> int:
        """Number of stored runs (any status)."""
        return self._backend.count()

    def __getstate__(self):
        # A connection cannot cross processes: a pickled store (sent to a Dask or
        # multiprocessing worker) carries its target and reopens on arrival.
        return {"store": self._target, "timeout": self.timeout, "readonly": self.readonly}

    def __setstate__(self, state):
        self._target, self.timeout, self.readonly = state["store"], state["timeout"], state["readonly"]
        self._open()

    def __repr__(self) -> str:
        state = "closed" if self._backend.closed else "open"
        return f"ResultsStore({self.location!r}, {state})"

    def _open(self) -> None:
        from .server import ServerBackend
        from .sqlite import SQLiteBackend

        target = self._target
        if is_url(target) and not target.lower().startswith("sqlite:"):
            self.path = None
            self.location = mask_url(target)
            self._backend = ServerBackend(target, self.timeout, self.readonly)
        else:
            self.path = sqlite_path(target)
            self.location = str(self.path)
            self._backend = SQLiteBackend(self.path, self.timeout, self.readonly)

