"""A throw-away PostgreSQL server for tests and benchmarks (not for real grids).

Runs ``initdb`` and ``pg_ctl`` of an installed PostgreSQL (Debian's ``postgresql``
package puts them in ``/usr/lib/postgresql/<version>/bin``) into a temporary
folder, on a free port of 127.0.0.1, with trust authentication and no fsync, and
removes everything again on :meth:`TemporaryPostgres.stop`. initdb refuses to run
as root, so as root the server runs as the ``postgres`` user (``runuser``).

Example
-------
>>> with TemporaryPostgres() as server:                    # doctest: +SKIP
...     store = ResultsStore(server.url())
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ...errors import StoreError

__all__ = ["TemporaryPostgres", "postgres_bindir", "INSTALL_HINT"]

INSTALL_HINT = "apt-get install -y postgresql"


def postgres_bindir():
    """Return the folder of the newest installed ``initdb``, or None."""
    def version(path):
        part = Path(path).parts[-3]
        return int(part) if part.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class TemporaryPostgres:
    """A PostgreSQL cluster in a temporary folder, started by :meth:`start`.

    Parameters
    ----------
    user : str, default "lensllm"
        The database superuser (trust authentication: any password is accepted).
    password : str, default "lensllm"
        Written into :meth:`url` only (to exercise password masking).

    Attributes
    ----------
    port : int
        The TCP port on 127.0.0.1.
    folder : pathlib.Path
        Data, socket and log folder (removed by :meth:`stop`).
    """

    def __init__(self, *, user="lensllm", password="lensllm"):
        self.user, self.password = user, password
        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise StoreError(f"PostgreSQL is not installed; run `{INSTALL_HINT}`.")
        if os.geteuid() == 0 and not shutil.which("runuser"):
            raise StoreError("running as root without `runuser` to start PostgreSQL as `postgres`.")
        # initdb and the server refuse to run as root.
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.folder = None
        self.port = None

    def start(self):
        """Create the cluster on first use, then start the server; return self."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="lensllm-pg-"))
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            if self._as_user:
                shutil.chown(self.folder, "postgres", "postgres")
            self._run("initdb", "-D", str(self.folder / "data"), "-U", self.user,
                      "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-o", options,
                  "-l", str(self.folder / "server.log"), "-w", "-t", "120", "start")
        return self

    def stop(self, *, remove=False) -> None:
        """Stop the server (a no-op when it is not running); `remove` deletes the cluster."""
        if self.folder is None:
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def url(self, database="postgres") -> str:
        """Return the database URL of `database` on this server."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name) -> str:
        """Create an empty database and return its URL."""
        self._run("createdb", "-h", str(self.folder), "-p", str(self.port), "-U", self.user, name)
        return self.url(name)

    def drop_database(self, name) -> None:
        """Drop a database, closing its open connections."""
        self._run("psql", "-h", str(self.folder), "-p", str(self.port), "-U", self.user, "-d",
                  "postgres", "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop(remove=True)

    def _run(self, program, *args):
        done = subprocess.run([*self._as_user, str(self.bindir / program), *args],
                              capture_output=True, text=True, timeout=180)
        if done.returncode:
            raise StoreError(f"{program} failed: {(done.stderr or done.stdout).strip()[-500:]}")
