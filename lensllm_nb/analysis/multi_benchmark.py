"""The selection protocol on many problems at once: one curves table, several datasets.

Each dataset is its own selection problem (its target is its largest size unless one
is given). A ratio that leaves fewer than :data:`~lensllm_nb.analysis.curves.MIN_POSITIVE_SIZES`
visible sizes for some candidate of a dataset is skipped there and reported; a method
the data cannot serve (``zeroshot`` without zero-shot losses) is skipped for that
dataset with its reason. The summary is the mean per method over datasets × ratios,
the figure the LCDB problems are judged by.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from .curves import validate_curves
from ..errors import ConfigError
from .protocol import DEFAULT_METHOD, DEFAULT_RATIOS, _check_ratios, run_benchmark, usable_ratios

__all__ = ["MultiBenchmarkResult", "run_benchmarks", "SUMMARY_METRICS"]

SUMMARY_METRICS = ("relacc", "regret", "pearson", "spearman")


@dataclass
class MultiBenchmarkResult:
    """Output of :func:`run_benchmarks`.

    Attributes
    ----------
    per_dataset : list of BenchmarkResult
    skipped_ratios : dict
        dataset -> list of ``{"ratio", "reason"}``.
    skipped_datasets : list of dict
        ``{"dataset", "reason"}`` for datasets where nothing could run.
    summary : pandas.DataFrame
        method, relacc, regret, pearson, spearman (means over datasets × ratios), n.
    wall_seconds : float
    """

    per_dataset: list
    skipped_ratios: dict
    skipped_datasets: list
    summary: pd.DataFrame
    wall_seconds: float
    level: float | None = None
    results: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_json_dict(self) -> dict:
        """``{"datasets": [one-dataset contract + "skipped_ratios"], "summary": [...], ...}``."""
        datasets = []
        for res in self.per_dataset:
            doc = res.to_json_dict()
            doc["skipped_ratios"] = [dict(s) for s in self.skipped_ratios.get(res.dataset, [])]
            datasets.append(doc)
        summary = [{"method": str(r["method"]), **{k: float(r[k]) for k in SUMMARY_METRICS}, "n": int(r["n"])}
                   for r in self.summary.to_dict("records")]
        return {"default_method": DEFAULT_METHOD, "datasets": datasets, "summary": summary,
                "skipped_datasets": [dict(s) for s in self.skipped_datasets],
                "wall_seconds": float(self.wall_seconds)}


def run_benchmarks(table, *, methods=None, target=None, ratios=DEFAULT_RATIOS, level=None) -> MultiBenchmarkResult:
    """Run the protocol on every dataset of a tidy curves table and average per method.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table with one or more datasets; not modified.
    methods, level
        As in :func:`~lensllm_nb.analysis.protocol.run_benchmark`.
    target : int, optional
        Size whose loss is predicted in every dataset; default each dataset's largest.
    ratios : sequence of int
        Data-budget ratios; per dataset, a ratio leaving < 3 visible sizes is skipped.

    Returns
    -------
    MultiBenchmarkResult
    """
    start = time.perf_counter()
    ratios = _check_ratios(ratios)
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    per, skipped_ratios, skipped_sets = [], {}, []
    for dataset, rows in df.groupby("dataset", sort=True):
        tgt = int(rows["n_train"].max()) if target is None else target
        usable, skipped = usable_ratios(rows, ratios, tgt)
        skipped_ratios[str(dataset)] = skipped
        if not usable:
            skipped_sets.append({"dataset": str(dataset), "reason": "no ratio leaves 3 visible sizes"})
            continue
        try:
            per.append(run_benchmark(rows, methods=methods, target=tgt, ratios=usable, level=level))
        except ConfigError as exc:
            skipped_sets.append({"dataset": str(dataset), "reason": str(exc)})
    if not per:
        raise ConfigError("no dataset could be benchmarked: "
                          + "; ".join(f"{s['dataset']}: {s['reason']}" for s in skipped_sets[:3]))
    results = pd.concat([r.results for r in per], ignore_index=True)
    summary = results.groupby("method", sort=False).agg(
        **{k: (k, "mean") for k in SUMMARY_METRICS}, n=("relacc", "size")).reset_index()
    return MultiBenchmarkResult(per_dataset=per, skipped_ratios=skipped_ratios, skipped_datasets=skipped_sets,
                                summary=summary, wall_seconds=time.perf_counter() - start, level=level,
                                results=results)

