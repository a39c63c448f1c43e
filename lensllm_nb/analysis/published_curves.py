"""The benchmark curves: FLAN, Gigaword and WMT19 of Lin et al. (2024), and tidy sets such as LCDB dev.

:func:`load` reads ``<name>.csv`` from the folder named by the ``LENSLLM_NB_DATA``
environment variable, or else downloads the upstream file once into the user cache
directory and checks its SHA-256. The files are never shipped with this package.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, CurveDataError
from ..utils.provenance import cache_dir
from .curves import REQUIRED_COLUMNS, read_curves, read_wide

__all__ = ["load", "published", "SHA256", "UPSTREAM_URL", "data_path"]

UPSTREAM_URL = "https://raw.githubusercontent.com/linhaowei1/Fine-tuning-Scaling-Law/main/benchmark/{name}.csv"
SHA256 = {
    "flan": "ead24af8eaa97ac0507bbd76c4880eb09c6361e252f4971666ba55017215d1e9",
    "gigaword": "7d0b08ef9df06eefb4355f859fb44e7860c1e55effd781d318d60a1f8661f2b3",
    "wmt19": "523b044495f87c1f954c359fb489cf4e38f739c7fca8161d70665853fb2d293a",
}
_ENV = "LENSLLM_NB_DATA"


def data_path(name) -> Path:
    """Path of ``<name>.csv``: in ``$LENSLLM_NB_DATA``, else in the cache (downloaded).

    Raises
    ------
    ConfigError
        For an unknown name without a local file.
    CurveDataError
        When the download fails or its checksum does not match.
    """
    name = str(name).lower()
    folder = os.environ.get(_ENV)
    if folder:
        path = Path(folder) / f"{name}.csv"
        if path.exists():
            return path
        if name not in SHA256:
            raise ConfigError(f"`name` {name!r}: no file {path}; known sets are {sorted(SHA256)}.")
    if name not in SHA256:
        raise ConfigError(f"`name` must be one of {sorted(SHA256)} (or a file in ${_ENV}), got {name!r}.")
    cached = cache_dir() / "benchmarks" / f"{name}.csv"
    if cached.exists() and _sha256(cached) == SHA256[name]:
        return cached
    return _download(name, cached)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(name: str, dest: Path) -> Path:
    url = UPSTREAM_URL.format(name=name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            tmp.write_bytes(response.read())
    except OSError as exc:
        raise CurveDataError(
            f"cannot download benchmark {name!r} from {url} ({exc}); set ${_ENV} to a folder holding "
            f"{name}.csv to work offline."
        ) from None
    digest = _sha256(tmp)
    if digest != SHA256[name]:
        tmp.unlink(missing_ok=True)
        raise CurveDataError(f"downloaded {name}.csv has SHA-256 {digest}, expected {SHA256[name]}; "
                             "the upstream file changed or the download was corrupted.")
    tmp.replace(dest)
    return dest


def load(name) -> pd.DataFrame:
    """Return a benchmark set as a validated tidy curves table.

    Parameters
    ----------
    name : str
        ``"flan"``, ``"gigaword"``, ``"wmt19"``, or the stem of another CSV in
        ``$LENSLLM_NB_DATA``: wide layout (one dataset, named ``name``) or tidy
        (its ``dataset`` column kept, e.g. the 84 problems of ``"lcdb_dev"``).
    """
    path = data_path(name)
    header = set(pd.read_csv(path, nrows=0).columns)
    if set(REQUIRED_COLUMNS) <= header:
        return read_curves(path)
    return read_wide(path, dataset=str(name).lower())


def published(name=None) -> pd.DataFrame:
    """The published selection figures (``published_selection.csv``) in ``$LENSLLM_NB_DATA``.

    Returns an empty frame with the right columns when the file is not available,
    since the figures are a comparison aid, not an input.
    """
    columns = ["dataset", "method", "metric", "ratio", "value"]
    folder = os.environ.get(_ENV)
    path = Path(folder) / "published_selection.csv" if folder else None
    if path is None or not path.exists():
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(path)
    if name is not None:
        table = table[table["dataset"].str.lower() == str(name).lower()]
    return table.reset_index(drop=True)
