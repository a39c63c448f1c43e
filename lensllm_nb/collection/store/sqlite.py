"""The SQLite file backend: one machine, several processes, no server.

* WAL mode, so readers never block the writer and each write is one short
  ``BEGIN IMMEDIATE`` transaction; a busy timeout plus jittered retries on
  ``database is locked``, so concurrent writers wait their turn.
* Opened for writing only on a local disk (:func:`.location.check_local_filesystem`)
  and only when ``PRAGMA quick_check`` passes: a damaged file is never written to.
* Opened for reading (``export``) with a ``mode=ro`` URI after checking the file
  header and schema without writing anything; a damaged file is read row by row
  and what cannot be read is reported in :attr:`SQLiteBackend.unreadable`.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import quote

from ...errors import StoreError
from .location import check_local_filesystem
from .schema import COLUMNS, KEY_COLUMNS, SCHEMA

__all__ = ["SQLiteBackend"]

_HEADER = b"SQLite format 3\x00"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{name} {sql}" for name, (sql, _) in SCHEMA.items())
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
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM runs"


class SQLiteBackend:
    """A SQLite results file (see the module docstring).

    Parameters
    ----------
    path : pathlib.Path
        The database file; created (with its folders) when writable and missing.
    timeout : float
        Seconds a write waits for other writers.
    readonly : bool
        Open for reading only: the file must exist and be a results store.
    """

    def __init__(self, path, timeout, readonly):
        self.path, self.timeout, self.readonly = Path(path), timeout, readonly
        self.location = str(self.path)
        self.unreadable = []
        if self.path.is_dir():
            raise StoreError(f"`store` {self.location!r} is a folder; pass a file path such as "
                             f"{str(self.path / 'results.db')!r}.")
        self._lock = threading.Lock()
        self._conn = None
        self._connect()

    # -- the backend interface -------------------------------------------------

    def upsert(self, values) -> None:
        """Write encoded rows in one transaction (all or nothing)."""
        def write(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, values)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._retrying(write)

    def fetch(self, status=None) -> list:
        """Return the stored rows (tuples in COLUMNS order), optionally of one status."""
        where, params = (" WHERE status = ?", (status,)) if status else ("", ())
        try:
            return self._retrying(lambda conn: conn.execute(_SELECT + where, params).fetchall())
        except StoreError as exc:
            cause = exc.__cause__
            # Damage (SQLITE_CORRUPT) is a DatabaseError; locks and I/O are OperationalErrors.
            if not self.readonly or not isinstance(cause, sqlite3.DatabaseError) \
                    or isinstance(cause, sqlite3.OperationalError):
                raise
        # A damaged file: read what the table b-tree still gives, row by row.
        rows = self._salvage()
        return [row for row in rows if status is None or row[COLUMNS.index("status")] == status]

    def is_done(self, key) -> bool:
        where = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
        return bool(self._retrying(lambda conn: conn.execute(
            f"SELECT 1 FROM runs WHERE {where} AND status = 'ok'", key).fetchall()))

    def count(self) -> int:
        return self._retrying(lambda conn: conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    # -- opening -----------------------------------------------------------------

    def _connect(self) -> None:
        self._pid = os.getpid()
        self._conn = None
        try:
            if self.readonly:
                self._conn = self._open_readonly()
            else:
                check_local_filesystem(self.path)
                if self.path.is_file() and self.path.stat().st_size:
                    _check_header(self.path, self.location)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit mode: transactions are opened explicitly with BEGIN
                # IMMEDIATE so the write lock is taken up front and never upgraded
                # mid-transaction (an upgrade that loses the race fails at once).
                self._conn = sqlite3.connect(self.path, timeout=self.timeout,
                                             isolation_level=None, check_same_thread=False)
                self._retrying(self._setup)
        except (sqlite3.Error, OSError, StoreError) as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if isinstance(exc, StoreError) and exc.__cause__ is None:
                raise  # already says what is wrong and how to fix it
            detail = exc.__cause__ or exc
            raise StoreError(
                f"cannot open the results store `store` {self.location!r}: {detail}. Pass a "
                f"{'' if self.readonly else 'writable '}path to a SQLite file created by "
                "ResultsStore (or a new one), or a database URL."
            ) from exc

    def _open_readonly(self):
        """Open an existing store with a mode=ro URI after checking it writes nothing."""
        if not self.path.is_file():
            raise StoreError(f"`store` {self.location!r} does not exist; pass the file given to "
                             "--store (or a database URL).")
        _check_header(self.path, self.location)
        uri = "file:" + quote(str(self.path.resolve()))
        # No -wal file means no connection has the store open and the main file holds
        # every committed row: read it immutably, so SQLite creates nothing next to it
        # (not even the -shm) and a read-only file or folder works. With a -wal file a
        # writer may be active: read through the WAL like any reader.
        wal = self.path.with_name(self.path.name + "-wal").exists()
        mode = "mode=ro" if wal else "mode=ro&immutable=1"
        conn = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=self.timeout,
                               isolation_level=None, check_same_thread=False)
        try:
            _check_columns(conn, self.location)
        except BaseException:
            conn.close()
            raise
        return conn

    def _setup(self, conn) -> None:
        # A damaged file must not take more writes: they would land on broken pages
        # and could make the whole table unreadable.
        try:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        except sqlite3.OperationalError:
            raise  # locked: retried by _retrying
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise StoreError(
                f"the results store `store` {self.location!r} is damaged (PRAGMA quick_check: "
                f"{'; '.join(map(str, problems))}), so nothing is written to it. Save what is "
                f"readable with `lensllm-nb export {self.location} --out curves.csv` and write "
                "new runs to a new store."
            )
        # journal_mode=WAL is persistent in the file; setting it again is a no-op.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"the file system does not support WAL (journal mode {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CREATE)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        _check_columns(conn, self.location)

    # -- reading a damaged file ------------------------------------------------------

    def _salvage(self) -> list:
        """Read every row the table b-tree still yields; note the rowid gaps it cannot read."""
        rows, after, self.unreadable = [], 0, []
        query = f"SELECT rowid, {', '.join(COLUMNS)} FROM runs WHERE rowid > ? ORDER BY rowid LIMIT 1"
        while True:
            try:
                found = self._conn.execute(query, (after,)).fetchone()
            except sqlite3.DatabaseError:
                found = _next_readable(self._conn, query, after)
                if found is None:
                    self.unreadable.append(f"rows after rowid {after}")
                    return rows
                self.unreadable.append(f"rows with rowid {after + 1}..{found[0] - 1}")
            if found is None:
                return rows
            after = found[0]
            rows.append(tuple(found[1:]))

    # -- retries ----------------------------------------------------------------------

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
                    raise StoreError(f"the results store {self.location!r} is closed; "
                                     "open it again with ResultsStore(store).")
                try:
                    return action(self._conn)
                except sqlite3.OperationalError as exc:
                    message = str(exc).lower()
                    if "locked" not in message and "busy" not in message:
                        raise StoreError(f"results store {self.location!r}: {exc}") from exc
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"results store {self.location!r} stayed locked for more than "
                            f"`timeout`={self.timeout:g} s; another process holds a long write. "
                            "Pass a larger timeout or retry later."
                        ) from exc
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                except sqlite3.Error as exc:
                    raise StoreError(f"results store {self.location!r}: {exc}") from exc


def _check_header(path, location) -> None:
    with open(path, "rb") as handle:
        if handle.read(len(_HEADER)) != _HEADER:
            raise StoreError(f"`store` {location!r} is not a SQLite file, so not a lensllm-nb "
                             "results store (nothing was changed); pass the file given to --store.")


def _check_columns(conn, location) -> None:
    found = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    missing = [c for c in COLUMNS if c not in found]
    if missing:
        what = "no `runs` table" if not found else f"a `runs` table that lacks column(s) {missing}"
        raise StoreError(f"`store` {location!r} has {what}, so it is not a lensllm-nb results "
                         "store (nothing was changed); pass the file given to --store.")


def _next_readable(conn, query, after):
    """Return the first readable row past a damaged stretch after rowid `after`, or None.

    Seeks at growing distances find some readable rowid past the damage; a binary
    search back from there finds the first one, so no readable row is skipped.
    """
    failed, step, found = after, 1, None
    while found is None and step < 2 ** 62:
        try:
            found = conn.execute(query, (after + step,)).fetchone()
            if found is None:
                return None
        except sqlite3.DatabaseError:
            failed, step = after + step, step * 2
    if found is None:
        return None
    low, high = failed, found[0] - 1  # a seek from `low` failed; one from `high` gives `found`
    while high - low > 1:
        middle = (low + high) // 2
        try:
            row = conn.execute(query, (middle,)).fetchone()
            high, found = middle, row
        except sqlite3.DatabaseError:
            low = middle
    return found
