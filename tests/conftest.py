"""Shared test settings: offline, headless, benchmark data from ../shared."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LENSLLM_NB_DATA", str(ROOT.parent / "shared" / "benchmarks"))
os.environ.setdefault("MPLBACKEND", "Agg")
# The suite never touches the network: hub names must fail fast and cleanly.
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
for _var in _OFFLINE_VARS:
    os.environ[_var] = "1"


@pytest.fixture(scope="session")
def batch_env():
    """Environment of the batch jobs the tests run: offline, one torch thread each."""
    return {"OMP_NUM_THREADS": "1", **{var: "1" for var in _OFFLINE_VARS}}


@pytest.fixture(scope="session")
def data_dir():
    """Folder of the benchmark curves (read-only)."""
    path = Path(os.environ["LENSLLM_NB_DATA"])
    if not (path / "flan.csv").exists():
        pytest.fail(f"benchmark curves not found in {path}; set LENSLLM_NB_DATA to ../shared/benchmarks")
    return path


@pytest.fixture(scope="session")
def flan(data_dir):
    from lensllm_nb.analysis.published_curves import load
    return load("flan")


@pytest.fixture(scope="session")
def gigaword(data_dir):
    from lensllm_nb.analysis.published_curves import load
    return load("gigaword")


@pytest.fixture(scope="session")
def zoo_models():
    """The whole offline zoo, built once (about a minute on 2 cores) and cached on disk."""
    from lensllm_nb.collection import zoo
    return zoo.build(progress=False)


@pytest.fixture(scope="session")
def own_models_run(tmp_path_factory):
    """templates/own_models.yaml run once, unchanged, on three tiny local models (tests/own_models.py).

    Shared by tests/test_own_models.py and the browser test of its reports.
    """
    from own_models import run_own_models

    base = tmp_path_factory.mktemp("own-models")
    return run_own_models(base / "root", base / "out")
