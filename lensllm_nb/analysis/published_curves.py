"""The benchmark curves: FLAN, Gigaword and WMT19 of Lin et al. (2024), tidy sets such as LCDB dev, and the zoo corpus.

:func:`load` reads ``<name>.csv`` from the folder named by the ``LENSLLM_NB_DATA``
environment variable, or else downloads the upstream file once into the user cache
directory and checks its SHA-256. Those files are never shipped with this package.

``load("zoo_corpus")`` reads the curves this project made on its own zoo
(``benchmarks/build_zoo_corpus.py``), shipped as package data with each run's
steps and learning rate; the NTK features of every candidate on every task come
with it in ``table.attrs["ntk"]`` (dataset -> model -> NTKFeatures), where the
``lensllm`` selector finds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, CurveDataError
from ..utils.provenance import cache_dir
from .curves import REQUIRED_COLUMNS, read_curves, read_wide
from .ntk_features import NTKFeatures

__all__ = ["load", "published", "SHA256", "UPSTREAM_URL", "data_path", "PACKAGED", "packaged_ntk"]

UPSTREAM_URL = "https://raw.githubusercontent.com/linhaowei1/Fine-tuning-Scaling-Law/main/benchmark/{name}.csv"
SHA256 = {
    "flan": "ead24af8eaa97ac0507bbd76c4880eb09c6361e252f4971666ba55017215d1e9",
    "gigaword": "7d0b08ef9df06eefb4355f859fb44e7860c1e55effd781d318d60a1f8661f2b3",
    "wmt19": "523b044495f87c1f954c359fb489cf4e38f739c7fca8161d70665853fb2d293a",
}
_ENV = "LENSLLM_NB_DATA"
# Sets shipped with the package (lensllm_nb/data_files): name -> (curves CSV, NTK JSON).
PACKAGED = {"zoo_corpus": ("zoo_corpus_curves.csv", "zoo_corpus_ntk.json")}
_DATA_FILES = Path(__file__).resolve().parents[1] / "data_files"  # lensllm_nb/data_files (package data)


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
        ``"flan"``, ``"gigaword"``, ``"wmt19"``, ``"zoo_corpus"`` (shipped, with
        NTK features in ``attrs["ntk"]``), or the stem of another CSV in
        ``$LENSLLM_NB_DATA``: wide layout (one dataset, named ``name``) or tidy
        (its ``dataset`` column kept, e.g. the 84 problems of ``"lcdb_dev"``).
    """
    if str(name).lower() in PACKAGED:
        return _load_packaged(str(name).lower())
    path = data_path(name)
    header = set(pd.read_csv(path, nrows=0).columns)
    if set(REQUIRED_COLUMNS) <= header:
        return read_curves(path)
    return read_wide(path, dataset=str(name).lower())


def _load_packaged(name):
    from .curves import validate_curves

    path = _DATA_FILES / PACKAGED[name][0]
    if not path.is_file():
        raise CurveDataError(f"the packaged set {name!r} is missing ({path}); rebuild it with "
                             "`python benchmarks/build_zoo_corpus.py` or reinstall lensllm-nb.")
    table = validate_curves(pd.read_csv(path), source=str(path))
    table.attrs["source"] = name
    table.attrs["ntk"] = packaged_ntk(name)
    return table


def packaged_ntk(name) -> dict:
    """NTK features of a packaged set: dataset -> model -> :class:`~lensllm_nb.analysis.ntk_features.NTKFeatures`."""
    if name not in PACKAGED:
        raise ConfigError(f"`name` must be one of {sorted(PACKAGED)}, got {name!r}.")
    raw = json.loads((_DATA_FILES / PACKAGED[name][1]).read_text(encoding="utf-8"))
    meta = ("sketch_dim", "sketch", "n_params", "seed")
    return {dataset: {model: NTKFeatures.from_gram(d["gram"], d["f0"], d["target"], **{k: d[k] for k in meta})
                      for model, d in models.items()}
            for dataset, models in raw.items()}


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
