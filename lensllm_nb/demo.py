"""The offline demo behind ``make demo`` / ``lensllm-nb demo``.

It builds the offline model zoo (cached after the first run), then runs the
notebooks through the batch runner in two stages:

1. ``01_finetune_subsets`` once per zoo candidate: each candidate is fine-tuned on
   the nested subsets ``zoo.DEMO_SIZES`` of the zoo task, into one results store;
2. ``02_fit_phase_law``, ``03_select_models`` and ``04_benchmark`` on that store
   (and on the FLAN and Gigaword benchmark curves when ``LENSLLM_NB_DATA`` has them).

Everything lands in ``reports/demo/`` (``index.html`` links the reports). A second
run reuses the zoo and skips every fine-tuning run the store already holds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import ConfigError

__all__ = ["demo_grid", "run_demo", "BENCHMARK_SETS"]

BENCHMARK_SETS = ("flan", "gigaword")
# Two notebooks at a time on two cores: one torch thread each, no oversubscription.
_JOB_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
_NOTEBOOKS = ("01_finetune_subsets", "02_fit_phase_law", "03_select_models", "04_benchmark")


def demo_grid(*, candidates=None, sets=None) -> dict:
    """Return the batch grid of the demo (see `lensllm_nb.batch.run_batch`).

    Parameters
    ----------
    candidates : list of str, optional
        Zoo candidates (``"zoo/NAME"``); default every candidate.
    sets : list of str, optional
        Benchmark sets for notebook 04; default those found in ``LENSLLM_NB_DATA``.

    Returns
    -------
    dict
        A grid mapping; the results store is ``{out}/results.db``.
    """
    from . import zoo

    root = Path(__file__).resolve().parents[1]
    missing = [name for name in _NOTEBOOKS if not (root / "notebooks" / f"{name}.ipynb").is_file()]
    if missing:
        raise ConfigError(
            f"the demo runs the notebooks of a lensllm-nb checkout, but {missing} are missing under "
            f"{str(root / 'notebooks')!r}; run it from a clone (`pip install -e .`)"
        )
    candidates = list(zoo.names() if candidates is None else candidates)
    sets = _available_sets() if sets is None else list(sets)
    finetune = {key: zoo.DEMO_SETTINGS[key] for key in ("epochs", "lr", "batch_size") if key in zoo.DEMO_SETTINGS}
    return {
        "name": "demo",
        "root": str(root),
        "timeout": 900,
        "env": dict(_JOB_ENV),
        "parameters": {"store": "{out}/results.db"},
        "jobs": [
            {"notebook": "notebooks/01_finetune_subsets.ipynb", "stage": 1, "grid": {"model": candidates},
             "parameters": {"dataset": "zoo", "sizes": list(zoo.DEMO_SIZES), "seeds": [0], "ntk_probe": 32,
                            **finetune}},
            {"notebook": "notebooks/02_fit_phase_law.ipynb", "stage": 2,
             "parameters": {"dataset": zoo.TASK_NAME, "max_train": _fit_budget()}},
            {"notebook": "notebooks/03_select_models.ipynb", "stage": 2,
             "parameters": {"dataset": zoo.TASK_NAME, "max_train": _fit_budget(),
                            "progressive_budget": 0.3}},
            {"notebook": "notebooks/04_benchmark.ipynb", "stage": 2,
             "parameters": {"sets": sets, "store_ratios": [2, 4, 8]}},
        ],
    }


def run_demo(out="reports/demo", *, workers=2, executor="local", log=print):
    """Build the zoo and run the demo grid; return the `BatchResult`.

    Parameters
    ----------
    out : str or Path
        Output folder (``index.html``, reports, executed notebooks, results store).
    workers : int
        Notebooks at a time.
    executor : {"local", "dask"}
        Batch executor.
    log : callable or None
        Called with progress lines.
    """
    from . import zoo
    from .batch import run_batch

    say = log or (lambda line: None)
    started = time.perf_counter()
    say(f"building the offline model zoo in {zoo.zoo_dir()} (cached after the first run) ...")
    # Built here, once, so that the parallel notebooks only read it.
    models = zoo.build(progress=log is not None)
    say(f"zoo ready after {time.perf_counter() - started:.0f} s: " + ", ".join(m.name for m in models))
    grid = demo_grid(candidates=[m.name for m in models])
    if not grid["jobs"][3]["parameters"]["sets"]:
        say("LENSLLM_NB_DATA has no benchmark curves: notebook 04 benchmarks the zoo store only")
    result = run_batch(grid, out=out, executor=executor, workers=workers, log=log)
    say(f"demo finished in {time.perf_counter() - started:.0f} s; open {result.index}")
    return result


def _fit_budget() -> int:
    """The largest size notebooks 02 and 03 fit on: every demo size but the largest.

    The zoo curves are flat up to about 128 examples and steepen only beyond 256,
    so a four-parameter law fitted on fewer sizes cannot see the power phase and
    its 90% prediction band at the target spans orders of magnitude. Six sizes
    show both phases with a readable band; the largest size stays held out, so the
    report compares every prediction with a measured loss.
    """
    from . import zoo

    return sorted(zoo.DEMO_SIZES)[-2]


def _available_sets() -> list:
    """The benchmark sets present in ``LENSLLM_NB_DATA`` (the demo never downloads)."""
    folder = os.environ.get("LENSLLM_NB_DATA")
    if not folder:
        return []
    return [name for name in BENCHMARK_SETS if (Path(folder) / f"{name}.csv").is_file()]
