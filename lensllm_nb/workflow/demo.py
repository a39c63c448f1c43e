"""The offline demo behind ``make demo`` / ``lensllm-nb demo``: cheap selection, checked.

Builds the offline model zoo (cached), fine-tunes every candidate on the nested
selection subsets and once on the full target through the batch runner, then runs
notebooks 02–04 on the stored curves and writes the reports, whose index opens with
the answer checked against the full runs.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.workflow.demo``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..collection import zoo
from ..collection.finetune import FineTuner
from ..collection.store import ResultsStore
from ..errors import ConfigError
from ..utils.safe_output import strict_json, write_inside
from .batch import BatchResult, expand_grid, run_batch
from .grid_runs import finetune_options, missing_runs
from .report import index_answer, write_index

__all__ = ["demo_grid", "run_demo", "write_summary", "BENCHMARK_SETS", "PROGRESSIVE_BUDGET"]

BENCHMARK_SETS = ("flan", "gigaword")
# The product's promise: progressive selection within 5 % of the FLOPs of
# fine-tuning every candidate on the full target.
PROGRESSIVE_BUDGET = 0.05
# Two notebooks at a time on two cores: one torch thread each, no oversubscription.
# No progress bars from the hub libraries: reports show tables, not bars.
_JOB_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
_NOTEBOOKS = ("01_finetune_subsets", "02_fit_phase_law", "03_select_models", "04_benchmark")
_FINETUNE_KEYS = ("epochs", "lr", "batch_size", "lora")


def demo_grid(*, candidates=None, sets=None) -> dict:
    """Return the batch grid of the demo (see `lensllm_nb.workflow.batch.run_batch`).

    Parameters
    ----------
    candidates : list of str, optional
        Zoo candidates (``"zoo/NAME"``) notebook 01 fine-tunes; default every
        candidate; empty: no notebook-01 job (every run is stored already).
    sets : list of str, optional
        Benchmark sets for notebook 04; default those found in ``LENSLLM_NB_DATA``.

    Returns
    -------
    dict
        A grid mapping; the results store is ``{out}/results.db``.
    """
    root = Path(__file__).resolve().parents[2]
    missing = [name for name in _NOTEBOOKS if not (root / "notebooks" / f"{name}.ipynb").is_file()]
    if missing:
        raise ConfigError(
            f"the demo runs the notebooks of a lensllm-nb checkout, but {missing} are missing under "
            f"{str(root / 'notebooks')!r}; run it from a clone (`pip install -e .`)"
        )
    candidates = list(zoo.names() if candidates is None else candidates)
    sets = _available_sets() if sets is None else list(sets)
    selection = {"dataset": zoo.TASK_NAME, "max_train": zoo.SELECTION_MAX_TRAIN, "target": zoo.FULL_SIZE}
    jobs = [
        {"notebook": "notebooks/02_fit_phase_law.ipynb", "stage": 2, "parameters": dict(selection)},
        {"notebook": "notebooks/03_select_models.ipynb", "stage": 2,
         "parameters": {**selection, "progressive_budget": PROGRESSIVE_BUDGET}},
        {"notebook": "notebooks/04_benchmark.ipynb", "stage": 2,
         "parameters": {"sets": sets, "store_ratios": _store_ratios()}},
    ]
    if candidates:
        jobs.insert(0, {"notebook": "notebooks/01_finetune_subsets.ipynb", "stage": 1,
                        "grid": {"model": candidates}, "parameters": _finetune_parameters()})
    return {"name": "demo", "root": str(root), "timeout": 900, "env": dict(_JOB_ENV),
            "parameters": {"store": "{out}/results.db"}, "jobs": jobs}


def run_demo(out="reports/demo", *, candidates=None, workers=2, executor="local", log=print):
    """Build the zoo, run the demo grid and write the answer; return the `BatchResult`.

    Parameters
    ----------
    out : str or Path
        Output folder (``index.html``, ``summary.json``, reports, executed
        notebooks, results store).
    candidates : list of str, optional
        Zoo candidates (``"zoo/NAME"``); default every candidate.
    workers : int
        Notebooks at a time.
    executor : {"local", "dask"}
        Batch executor.
    log : callable or None
        Called with progress lines.
    """
    say = log or (lambda line: None)
    started = time.perf_counter()
    out = Path(out).expanduser().resolve()
    say(f"building the offline model zoo in {zoo.zoo_dir()} (cached after the first run) ...")
    # Built here, once, so that the parallel notebooks only read it.
    models = zoo.build(candidates, progress=log is not None)
    say(f"zoo ready after {time.perf_counter() - started:.0f} s: " + ", ".join(m.name for m in models))
    checked = time.perf_counter()
    kept = _stored_candidates([m.name for m in models], out)
    if kept:
        say(f"every run of {len(kept)} candidates is in the store ({time.perf_counter() - checked:.1f} s to "
            "check); their notebook-01 reports are kept")
    grid = demo_grid(candidates=[m.name for m in models if m.name not in {k['model'] for k in kept}])
    if not grid["jobs"][-1]["parameters"]["sets"]:
        say("LENSLLM_NB_DATA has no benchmark curves: notebook 04 benchmarks the zoo store only")
    result = run_batch(grid, out=out, executor=executor, workers=workers, log=log)
    results = [entry["result"] for entry in kept] + result.results
    answer = index_answer(results)
    write_index([{**item, "notebook": item["output"]} for item in results], result.index,
                title="lensllm-nb demo: which zoo model to fine-tune",
                note=f"Run record: {result.record.name} · {time.perf_counter() - started:.0f} s in all",
                answer=answer)
    if isinstance(answer, str) or answer is None:
        say(f"no answer: {answer or 'notebook 03 did not finish'}")
    else:
        write_summary(answer, out / "summary.json")
        facts = answer.facts()
        say(f"answer: fine-tune {facts['chosen']} (true rank {facts['true_rank']} of {facts['candidates']}, "
            f"RelAcc {facts['relacc']:.3f}) for {facts['cost_fraction']:.1%} of the FLOPs of fine-tuning all")
    say(f"demo finished in {time.perf_counter() - started:.0f} s; open {result.index}")
    return BatchResult(result.out, result.index, result.record, results, time.perf_counter() - started)


def write_summary(answer, path) -> Path:
    """Write the answer's summary as strict JSON (see `lensllm_nb.workflow.recommendation.SelectionAnswer.summary`).

    Parameters
    ----------
    answer : lensllm_nb.workflow.recommendation.SelectionAnswer
    path : str or Path

    Returns
    -------
    Path
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_inside(path.parent, path.name, strict_json(answer.summary(), indent=2) + "\n")


def _finetune_parameters() -> dict:
    """Notebook 01's parameters in the demo: selection sizes, full run, zoo settings."""
    finetune = {key: zoo.DEMO_SETTINGS[key] for key in _FINETUNE_KEYS}
    return {"dataset": zoo.TASK_NAME, "sizes": list(zoo.SELECTION_SIZES), "full_sizes": [zoo.FULL_SIZE],
            "seeds": [0], "ntk_probe": 32, "progress": False, **finetune}


def _stored_candidates(candidates, out) -> list:
    """The candidates whose notebook-01 job need not run again, with their earlier result.

    A candidate is kept when its executed notebook from an earlier run finished
    with the same parameters, its report exists, and the store holds every run
    (same config hash). Checking takes well under a second per candidate; no
    weights are loaded.
    """
    import nbformat

    store_path = out / "results.db"
    if not store_path.is_file():
        return []

    jobs = [job for job in expand_grid(demo_grid(candidates=candidates, sets=[]), out=out) if job.stage == 1]
    # Loaded once for every job (imports, task): not part of any one job's time.
    task, store, kept = zoo.task_data(), ResultsStore(store_path), []
    for job in jobs:
        started = time.perf_counter()
        if not (Path(job.output).is_file() and Path(job.report).is_file()):
            continue
        nb = nbformat.read(job.output, as_version=4)
        run = nb.metadata.get("lensllm_nb", {})
        if run.get("status") != "ok" or nb.metadata.get("papermill", {}).get("parameters") != job.parameters:
            continue
        params = job.parameters
        options = finetune_options(params["model"], epochs=params["epochs"], lr=params["lr"],
                                   batch_size=params["batch_size"], ntk_probe=params["ntk_probe"])
        sizes = [*params["sizes"], *params["full_sizes"]]
        if missing_runs(store, FineTuner(params["model"], **options), task, sizes, params["seeds"]):
            continue
        seconds = round(time.perf_counter() - started, 3)
        kept.append({"model": params["model"], "result": {
            "name": job.name, "stage": 1, "notebook": job.notebook, "parameters": job.grid_values,
            "status": "ok", "seconds": seconds, "attempts": 0, "output": job.output,
            "report": job.report, "report_error": None, "error": None,
            "note": ("all runs already in the store: report of "
                     f"{nb.metadata.get('papermill', {}).get('end_time', 'the earlier run')} kept"),
        }})
    return kept


def _store_ratios() -> list:
    """Budget ratios target / max_train notebook 04 benchmarks the zoo store at."""
    positive = [n for n in zoo.SELECTION_SIZES if n > 0]
    # At least three visible sizes, as the laws need.
    return [zoo.FULL_SIZE // n for n in positive[2:]][::-1]


def _available_sets() -> list:
    """The benchmark sets present in ``LENSLLM_NB_DATA`` (the demo never downloads)."""
    folder = os.environ.get("LENSLLM_NB_DATA")
    if not folder:
        return []
    return [name for name in BENCHMARK_SETS if (Path(folder) / f"{name}.csv").is_file()]
