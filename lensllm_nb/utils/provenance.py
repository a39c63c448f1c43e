"""Run records: configuration hash, seed and library versions.

Every run (a fine-tune, a fit, a benchmark, a notebook batch) leaves a record so a
result can be traced back to what produced it, also when the run failed. A record
holds no secret: config, argv, error and extras are masked, and the hash is of
the masked config; cached records are readable by their owner only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .safe_output import mask_secrets, safe_filename, strict_json

__all__ = ["cache_dir", "config_hash", "library_versions", "run_record", "write_record", "MAX_CACHED_RECORDS"]

_TRACKED = (
    "lensllm-nb", "numpy", "scipy", "pandas", "torch", "transformers",
    "datasets", "tokenizers", "peft", "accelerate", "papermill", "nbconvert",
    "ipywidgets", "dask", "distributed", "seaborn", "matplotlib",
)


def config_hash(config: dict) -> str:
    """Return a short, order-independent hash of a JSON-serialisable config.

    Parameters
    ----------
    config : dict
        Plain values only; keys are sorted so that equal configs hash equally.

    Returns
    -------
    str
        The first 16 hex digits of the SHA-256 of the canonical JSON, secrets
        masked (a password is no setting of a run).
    """
    # Of the masked config: a short hash of a password is a cheap offline guess test.
    canonical = json.dumps(mask_secrets(config), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def library_versions() -> dict:
    """Return the installed versions of the libraries a result depends on.

    Libraries that are not installed are left out rather than reported as errors,
    because most runs need only part of the stack.
    """
    versions = {"python": platform.python_version()}
    for name in _TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_record(kind: str, config: dict, *, seed=None, status="ok", error=None, **extra) -> dict:
    """Build the record one run leaves behind.

    Parameters
    ----------
    kind : str
        What ran (``"finetune"``, ``"benchmark"``, ``"batch"``, ...).
    config : dict
        The settings of the run, stored unchanged but for masked secrets.
    seed : int, optional
        The random seed, when the run has one.
    status : {"ok", "failed"}
        Whether the run finished.
    error : str, optional
        The error message of a failed run.
    **extra
        Anything else worth keeping (wall seconds, device, ...).

    Every secret (URL passwords, ``password=`` values...) is masked, argv included.
    """
    return mask_secrets({
        "kind": kind,
        "config": config,
        "config_hash": config_hash(config),
        "seed": seed,
        "status": status,
        "error": error,
        "versions": library_versions(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    })


def cache_dir() -> Path:
    """The lensllm-nb cache folder: ``$LENSLLM_NB_CACHE`` or the user cache directory."""
    override = os.environ.get("LENSLLM_NB_CACHE")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lensllm-nb"))


# Records kept in the default cache folder; older ones are deleted so that every
# CLI call leaving a record does not fill the disk over months of use.
MAX_CACHED_RECORDS = 1000


def write_record(record: dict, folder=None) -> Path:
    """Write a run record as JSON and return its path.

    Parameters
    ----------
    record : dict
        From :func:`run_record`.
    folder : str or Path, optional
        Where to write; default ``cache_dir() / "runs"``. The file name holds the
        time, the kind of run and the config hash, so records never overwrite each
        other. In the default folder only the newest `MAX_CACHED_RECORDS` are kept.
        The file is readable by its owner only (mode 0600) and its secrets masked.
    """
    bounded = folder is None
    folder = Path(folder) if folder is not None else cache_dir() / "runs"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}-{safe_filename(record['kind'])}-{record['config_hash']}.json"
    # Owner-only (0600), never through a planted symbolic link; masked again in
    # case the record was not built by run_record.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(strict_json(mask_secrets(record), indent=2))
    if bounded:
        _prune(folder, MAX_CACHED_RECORDS)
    return path


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the `keep` newest records (names start with a UTC time stamp)."""
    records = sorted(folder.glob("*.json"))
    for old in records[:-keep]:
        old.unlink(missing_ok=True)
