"""Where a store lives: a SQLite file on this host or a database URL, and whether that is safe.

SQLite in WAL mode keeps its lock table in shared memory, so every process that
writes the file must run on one host and the file must sit on a local disk
(SQLite's own documentation: WAL does not work over a network filesystem). This
module tells a database URL from a path, masks URL passwords for anything that is
printed or stored, and refuses the two unsafe cases: a SQLite file on a network
filesystem, and a SQLite store written by Dask workers on other hosts.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import unquote

from ...errors import ConfigError, StoreError
from ...utils.safe_output import MASK, mask_secrets

__all__ = ["is_url", "mask_url", "mask_urls", "mask_text", "sqlite_path", "filesystem_type",
           "check_local_filesystem", "check_dask_store", "NETWORK_FILESYSTEMS"]

# The mount table read by check_local_filesystem (a module setting so tests can
# show it a network mount).
MOUNTINFO = "/proc/self/mountinfo"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# fstype (or its part before the dot: "fuse.sshfs" -> "fuse") of mounts whose
# files other hosts can also write, or whose locking SQLite cannot trust.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "lustre", "gpfs",
    "9p", "fuse", "fuseblk", "ceph", "glusterfs", "afs", "beegfs", "orangefs", "pvfs2",
    "davfs", "sshfs", "virtiofs", "panfs", "wekafs",
})
# FUSE filesystems that are a local disk (container root file systems).
_LOCAL_FUSE = frozenset({"fuse.fuse-overlayfs", "fuse.overlayfs"})
_FIX = ("use a database server instead: pass a database URL such as "
        "postgresql://user@dbhost/lensllm as `store` (README, 'Scaling out')")


def is_url(target) -> bool:
    """Return True when `target` is a database URL (``scheme://...``), not a file path."""
    return isinstance(target, str) and bool(_URL.match(target))


def mask_url(target) -> str:
    """Return `target` as text with its secrets masked (:func:`~lensllm_nb.utils.safe_output.mask_secrets`)."""
    return mask_secrets(os.fspath(target) if isinstance(target, os.PathLike) else str(target))


def mask_urls(value):
    """Return a copy of plain data (dicts, lists, strings) with every secret masked."""
    return mask_secrets(value)


def mask_text(text, url) -> str:
    """Return `text` with its secrets masked, and the password of `url` wherever it appears."""
    text = mask_secrets(str(text))
    parts = _credentials(str(url))
    # A driver may echo the password outside any URL (or percent-decoded).
    secrets = [] if parts is None else [parts[2], unquote(parts[2])]
    for secret in sorted({s for s in secrets if len(s) > 0}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _credentials(text):
    """Return (scheme, user, password, rest) of a URL with credentials, else None."""
    if not is_url(text):
        return None
    scheme, rest = text.split("://", 1)
    # The last '@' ends the credentials: an unescaped '@' or '/' may sit in a password.
    credentials, at, host = rest.rpartition("@")
    if not at:
        return None
    user, _, password = credentials.partition(":")
    return scheme, user, password, host


def sqlite_path(target) -> Path:
    """Return the file of a SQLite store given as a path or a ``sqlite:///`` URL."""
    if is_url(target):
        if not target.lower().startswith("sqlite:///") or len(target) == len("sqlite:///"):
            raise ConfigError(f"`store` {mask_url(target)!r} is not a SQLite file URL; pass "
                              "sqlite:///relative/path.db, sqlite:////absolute/path.db or a path.")
        return Path(target[len("sqlite:///"):].split("?", 1)[0])
    if not isinstance(target, (str, os.PathLike)) or str(target) in ("", ":memory:"):
        raise ConfigError(
            f"`store` must be the path of a database file or a database URL, got {target!r}; "
            "pass e.g. 'results.db' or 'postgresql://user@dbhost/lensllm'."
        )
    return Path(target)


def filesystem_type(path, mountinfo=None):
    """Return the filesystem type of the mount holding `path`, or None when unknown.

    Parameters
    ----------
    path : str or os.PathLike
        A file or folder; need not exist yet (its nearest existing parent counts).
    mountinfo : str or os.PathLike, optional
        The mount table (Linux ``/proc/self/mountinfo`` format); default :data:`MOUNTINFO`.
    """
    try:
        lines = Path(mountinfo or MOUNTINFO).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None  # not Linux: no mount table to consult
    target = Path(os.path.abspath(path))
    while not target.exists() and target != target.parent:
        target = target.parent
    target = str(target.resolve())
    best, best_type = "", None
    for line in lines:
        fields = line.split(" - ", 1)
        head, tail = fields[0].split(), fields[1].split() if len(fields) == 2 else []
        if len(head) < 5 or not tail:
            continue
        # Mount points escape spaces and the like as octal (\040).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), head[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, tail[0]
    return best_type


def check_local_filesystem(path, mountinfo=None) -> None:
    """Raise StoreError when the SQLite file `path` would sit on a network filesystem."""
    fstype = filesystem_type(path, mountinfo)
    if fstype is None or fstype.lower() in _LOCAL_FUSE:
        return
    if fstype.lower() in NETWORK_FILESYSTEMS or fstype.lower().split(".")[0] in NETWORK_FILESYSTEMS:
        raise StoreError(
            f"the SQLite store `store` {str(path)!r} is on a {fstype} network filesystem, where "
            f"SQLite's locking is unsafe and concurrent writes can corrupt it; put the file on a "
            f"local disk for one machine, or {_FIX}."
        )


def check_dask_store(client, stores, runner_host=None) -> None:
    """Refuse a SQLite store written by Dask workers that are not all on this host.

    A LocalCluster (every worker on this host) with a SQLite file on a local disk
    stays allowed.

    Parameters
    ----------
    client : dask.distributed.Client
        The connected client; each worker reports its host name.
    stores : iterable
        The ``store`` values the jobs use (paths, URLs, empty or None).
    runner_host : str, optional
        This host's name; default ``socket.gethostname()``.

    Raises
    ------
    StoreError
        Naming the remote workers and the fix (a database URL).
    """
    files = sorted({mask_url(s) for s in stores
                    if s and isinstance(s, (str, os.PathLike)) and
                    (not is_url(s) or str(s).lower().startswith("sqlite:"))})
    if not files:
        return
    runner_host = runner_host or socket.gethostname()
    worker_hosts = client.run(socket.gethostname)
    remote = sorted(f"{address} ({host})" for address, host in worker_hosts.items() if host != runner_host)
    if remote:
        raise StoreError(
            f"the grid writes the SQLite store `store` {files[0]!r}, but Dask worker(s) "
            f"{', '.join(remote[:3])}{' ...' if len(remote) > 3 else ''} run on other hosts than "
            f"this runner ({runner_host}); SQLite is safe on one host only: {_FIX}."
        )
