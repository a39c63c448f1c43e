"""Notebook 04's benchmark runs, one per set: each summary under its set's name, each warning once.

:func:`run_sets` runs :func:`~lensllm_nb.analysis.multi_benchmark.run_benchmarks` on
every (curves, ratios) source and shows each set as it finishes (:func:`show_runs`:
the set's name from :func:`run_label`, its summary, what it skipped and why), then
the warnings it raised; a warning that several sets, ratios or methods raise alike
is shown once.
"""

from __future__ import annotations

import sys
import warnings

from ..analysis.multi_benchmark import run_benchmarks

__all__ = ["run_sets", "run_label", "show_runs"]

_SHOWN_DATASETS = 3


def run_sets(sources, *, methods=None, names=None, show=True) -> list:
    """Benchmark each ``(table, ratios)`` of `sources`; return one result per source.

    Parameters
    ----------
    sources : list of (pandas.DataFrame, list of int)
        Curves and the budget ratios to benchmark them at.
    methods : list of str, optional
        Selection methods; default every method.
    names : list of (str or None), optional
        The set name of each source (see `run_label`).
    show : bool
        As each set finishes, show it (`show_runs`) and then the warnings it raised.

    Returns
    -------
    list of lensllm_nb.analysis.multi_benchmark.MultiBenchmarkResult
        In the order of `sources`. A warning is re-issued once per (category,
        text) over all the sets, after the first set that raised it, so the
        kernel's filters still apply.
    """
    names, runs, seen = list(names or []), [], set()
    for position, (table, ratios) in enumerate(sources):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs.append(run_benchmarks(table, methods=methods, ratios=ratios))
        if show:
            show_runs(runs[-1:], names[position:position + 1])
            sys.stdout.flush()  # the set's label before its warnings
        for item in caught:
            key = (item.category, str(item.message))
            if key not in seen:
                seen.add(key)
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)
    return runs


def run_label(run, name=None) -> str:
    """The line above a run's summary: which set (and datasets), how long, what the mean is over.

    Parameters
    ----------
    run : lensllm_nb.analysis.multi_benchmark.MultiBenchmarkResult
    name : str, optional
        The set's name (a benchmark name or a curves file); None: named by its datasets.
    """
    datasets = [str(one.dataset) for one in run.per_dataset]
    shown = ", ".join(datasets[:_SHOWN_DATASETS])
    if len(datasets) > _SHOWN_DATASETS:
        shown += f", … ({len(datasets)} datasets)"
    if not datasets:
        shown = "no dataset benchmarked"
    head = shown if name is None or [str(name)] == datasets else f"{name} ({shown})"
    count = f"{len(datasets)} dataset" + ("" if len(datasets) == 1 else "s")
    return f"{head}: {count}, {run.wall_seconds:.1f} s; mean over datasets × ratios:"


def _skipped(run) -> list:
    """``(dataset, what, reason)`` of every ratio and method a run skipped."""
    skipped = [(dataset, skip) for dataset, skips in run.skipped_ratios.items() for skip in skips]
    skipped += [(one.dataset, skip) for one in run.per_dataset for skip in one.skipped]
    return [(dataset, skip.get("method", skip.get("ratio")), skip["reason"]) for dataset, skip in skipped]


def show_runs(runs, names=None) -> None:
    """Print each run's label, display its summary and list what it skipped.

    Parameters
    ----------
    runs : list of MultiBenchmarkResult
        The results of `run_sets`.
    names : list of (str or None), optional
        The set name of each run (see `run_label`).
    """
    from IPython.display import display

    names = list(names or [])
    for position, run in enumerate(runs):
        print(run_label(run, names[position] if position < len(names) else None))
        display(run.summary)
        for dataset, what, reason in _skipped(run):
            print(f"  skipped on {dataset}: {what} ({reason})")
