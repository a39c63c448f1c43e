"""The database-server backend: any machine of a cluster writes through a URL.

SQLAlchemy Core with the same ``runs`` table as the SQLite file and the same
idempotent upsert, written as PostgreSQL's ``INSERT ... ON CONFLICT (key) DO
UPDATE ... WHERE`` (SQLite URLs go to the file backend). A lost connection (the
server restarted, the network dropped) is retried with backoff until ``timeout``;
then the write fails with a :class:`~lensllm_nb.errors.StoreError` that says the
run was not stored, and a rerun of the grid completes it (stored runs are skipped).
Passwords never appear in messages: the URL is shown masked.
"""

from __future__ import annotations

import os
import random
import threading
import time

from ...errors import ConfigError, StoreError
from .location import mask_text, mask_url
from .schema import COLUMNS, KEY_COLUMNS, SCHEMA

__all__ = ["ServerBackend", "SUPPORTED_DIALECTS"]

# Dialects with an INSERT ... ON CONFLICT ... DO UPDATE ... WHERE in SQLAlchemy.
SUPPORTED_DIALECTS = ("postgresql",)
# Drivers SQLAlchemy would pick for a bare scheme, replaced by the one we install.
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


class ServerBackend:
    """A results table on a database server (see the module docstring).

    Parameters
    ----------
    url : str
        A SQLAlchemy database URL such as ``postgresql://user@dbhost:5432/lensllm``.
        ``postgresql://`` uses psycopg 3; a password may come from the URL, from
        ``PGPASSWORD`` or from ``~/.pgpass`` (keeps it out of notebooks and records).
    timeout : float
        Seconds a connection or write keeps retrying before it fails.
    readonly : bool
        Never create the table: it must exist already.
    """

    def __init__(self, url, timeout, readonly):
        self.url, self.timeout, self.readonly = url, timeout, readonly
        self.location = mask_url(url)
        self.unreadable = []
        self._lock = threading.Lock()
        self._engine = None
        self._connect()

    # -- the backend interface -------------------------------------------------

    def upsert(self, values) -> None:
        """Write encoded rows in one transaction (all or nothing)."""
        records = [dict(zip(COLUMNS, v)) for v in values]
        self._retrying(lambda conn: conn.execute(self._upsert, records), "write")

    def fetch(self, status=None) -> list:
        query = self._sa.select(*(self._table.c[c] for c in COLUMNS))
        if status:
            query = query.where(self._table.c.status == status)
        return [tuple(r) for r in self._retrying(lambda conn: conn.execute(query).fetchall(), "read")]

    def is_done(self, key) -> bool:
        c = self._table.c
        query = self._sa.select(c.model).where(
            *(c[name] == value for name, value in zip(KEY_COLUMNS, key)), c.status == "ok").limit(1)
        return bool(self._retrying(lambda conn: conn.execute(query).fetchall(), "read"))

    def count(self) -> int:
        query = self._sa.select(self._sa.func.count()).select_from(self._table)
        return int(self._retrying(lambda conn: conn.execute(query).scalar(), "read"))

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    @property
    def closed(self) -> bool:
        return self._engine is None

    # -- opening ---------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:
            raise ConfigError("a database URL as `store` needs SQLAlchemy and psycopg; run "
                              "`pip install sqlalchemy 'psycopg[binary]'`.") from None
        self._sa = sa
        self._pid = os.getpid()
        try:
            url = sa.engine.make_url(self.url)
        except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise ConfigError(f"`store` {self.location!r} is not a valid database URL; pass e.g. "
                              "postgresql://user@dbhost:5432/lensllm or a file path.") from None
        url = url.set(drivername=_DEFAULT_DRIVERS.get(url.drivername, url.drivername))
        if url.get_backend_name() not in SUPPORTED_DIALECTS:
            raise ConfigError(f"`store` {self.location!r}: the {url.get_backend_name()!r} database "
                              f"is not supported; use {' or '.join(SUPPORTED_DIALECTS)} "
                              "(postgresql://...) or a SQLite file path.")
        try:
            # No pre-ping round trip per write: a connection the server dropped (restart)
            # fails its statement, is discarded by the pool and the write is retried,
            # which the idempotent upsert makes safe even when a COMMIT's fate is unknown.
            self._engine = sa.create_engine(url, pool_size=1, max_overflow=1,
                                            connect_args={"connect_timeout": max(1, int(self.timeout))})
        except ImportError as exc:
            raise ConfigError(f"`store` {self.location!r} needs the database driver ({exc}); run "
                              "`pip install 'psycopg[binary]'`.") from None
        self._table, self._upsert = _runs_table(sa)
        self._retrying(self._setup, "open")

    def _setup(self, conn) -> None:
        inspector = self._sa.inspect(conn)
        if not inspector.has_table("runs") and not self.readonly:
            # Several workers may create the table at once; the loser's error is harmless.
            try:
                with conn.begin_nested():
                    self._table.metadata.create_all(conn, checkfirst=True)
            except (self._sa.exc.IntegrityError, self._sa.exc.ProgrammingError):
                pass
            inspector = self._sa.inspect(conn)
        found = {c["name"] for c in inspector.get_columns("runs")} if inspector.has_table("runs") else set()
        missing = [c for c in COLUMNS if c not in found]
        if missing:
            what = "no `runs` table" if not found else f"a `runs` table that lacks column(s) {missing}"
            raise StoreError(f"`store` {self.location!r} has {what}, so it is not a lensllm-nb "
                             "results store (nothing was changed); pass the URL given to --store.")

    # -- retries ----------------------------------------------------------------------

    def _retrying(self, action, what):
        """Run ``action(conn)`` in a transaction, retrying while the server is unreachable."""
        if self._pid != os.getpid() and self._engine is not None:
            # A forked child must not share the parent's sockets.
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        sa = self._sa
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        with self._lock:
            while True:
                if self._engine is None:
                    raise StoreError(f"the results store {self.location!r} is closed; "
                                     "open it again with ResultsStore(store).")
                try:
                    with self._engine.begin() as conn:
                        return action(conn)
                except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                    if time.monotonic() >= deadline:
                        raise StoreError(self._unreachable(exc, what)) from None
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"results store {self.location!r}: {self._reason(exc)}") from None

    def _unreachable(self, exc, what) -> str:
        done = {"write": "the run was NOT stored; rerun the grid once the server is back (stored "
                         "runs are skipped)",
                "read": "nothing was read", "open": "nothing was written"}[what]
        return (f"cannot {what} the results store {self.location!r}: the database server did not "
                f"answer for `timeout`={self.timeout:g} s ({self._reason(exc)}); {done}. Check "
                "that the server runs and the URL is right.")

    def _reason(self, exc) -> str:
        # The driver's own message, first line only: SQLAlchemy appends the SQL and
        # its parameters, and nothing may echo the password.
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
        return mask_text(lines[0], self.url)


def _runs_table(sa):
    """Return the ``runs`` table and its idempotent upsert statement."""
    from sqlalchemy.dialects.postgresql import insert

    types = {"TEXT": sa.Text, "INTEGER": sa.BigInteger, "REAL": sa.Double}
    columns = [sa.Column(name, types[sql.split()[0]](), nullable="NOT NULL" not in sql)
               for name, (sql, _) in SCHEMA.items()]
    table = sa.Table("runs", sa.MetaData(), *columns, sa.PrimaryKeyConstraint(*KEY_COLUMNS))
    statement = insert(table)
    # A failure must never erase a finished run (as in the SQLite file's upsert).
    upsert = statement.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: statement.excluded[c] for c in COLUMNS if c not in KEY_COLUMNS},
        where=sa.or_(statement.excluded.status == "ok", table.c.status != "ok"),
    )
    return table, upsert
