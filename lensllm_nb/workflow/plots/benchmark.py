"""Benchmark protocol results: the metric heatmap per method and ratio, and the cost/quality Pareto plot.

``plot_benchmark_heatmap`` and ``plot_pareto`` draw one dataset on one Axes and
return it; their ``_grid`` twins draw one panel per dataset and return the
seaborn FacetGrid, also for one dataset.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from ...errors import ConfigError
from ...utils.safe_output import escape_mathtext
from ...utils.validation import check_columns
from ._base import _dataset_grid, _finite_column, _one_dataset

__all__ = ["plot_benchmark_heatmap", "plot_benchmark_heatmap_grid", "plot_pareto", "plot_pareto_grid"]


# Metrics that run_benchmark reports per (dataset, method, ratio), with the names
# the papers print and that published_selection.csv uses.
_METRICS = {"pearson": "PearCorr", "relacc": "RelAcc", "spearman": "Spearman"}


_RESULT_COLUMNS = ("dataset", "method", "ratio", "cost_fraction")
# Inches of one Pareto panel (width, height).
_PARETO_SIZE = (8.0, 5.0)


def plot_benchmark_heatmap(results, metric="pearson", *, ax=None, published=None):
    """Heatmap of a selection metric of one dataset, methods × ratios, with annotated values.

    Parameters
    ----------
    results : pandas.DataFrame
        ``run_benchmark(...).results`` of one dataset: one row per (method, ratio)
        with the metric columns (several datasets: `plot_benchmark_heatmap_grid`).
    metric : {"pearson", "relacc", "spearman"}, default "pearson"
        Metric to show.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made otherwise.
    published : pandas.DataFrame, str or Path, optional
        Published figures in long format (``dataset, method, metric, ratio,
        value``, e.g. ``published_selection.csv``) or a path to such a CSV. Rows
        of the same dataset (case-insensitive) and metric are added below a
        separator as ``"<method> (paper)"``; ratios the results lack are left out.
        Cells without a value (NaN, or a ratio a paper row lacks) read ``n/a``.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ConfigError
        If the metric is unknown, a column is missing, a (dataset, method,
        ratio) appears twice, or ``results`` holds several datasets.
    """
    draw, size = _heatmap_panel(results, metric, published)
    # no grid lines: they would show through missing cells
    return _one_dataset(results, draw, ax, size, arg="results", name="plot_benchmark_heatmap", style="white")


def plot_benchmark_heatmap_grid(results, metric="pearson", *, published=None):
    """One heatmap panel per dataset (see `plot_benchmark_heatmap`), one colour scale for all.

    Parameters
    ----------
    results : pandas.DataFrame
        ``run_benchmark(...).results``: one row per (dataset, method, ratio).
    metric : {"pearson", "relacc", "spearman"}, default "pearson"
        Metric to show.
    published : pandas.DataFrame, str or Path, optional
        Published figures, as in `plot_benchmark_heatmap`; each panel shows its dataset's.

    Returns
    -------
    seaborn.FacetGrid
        One column per dataset, also when ``results`` holds one.

    Raises
    ------
    ConfigError
        As `plot_benchmark_heatmap`, except that several datasets are welcome.
    """
    draw, size = _heatmap_panel(results, metric, published)
    return _dataset_grid(results, draw, size, arg="results", style="white")


def _heatmap_panel(results, metric, published):
    """The checked inputs' panel drawer ``draw(ax, frame, dataset, last)`` and the size of one panel."""
    _check_results(results, metric)
    paper = _read_published(published, metric)
    values = pd.to_numeric(results[metric], errors="coerce")
    if paper is not None:
        values = pd.concat([values, paper["value"]])
    # one colour scale for every panel; metrics are at most 1, negative r is possible
    vmin = min(0.0, float(values.min())) if values.notna().any() else 0.0

    def draw(ax, frame, dataset, last):
        table = _metric_table(frame, metric, paper, dataset)
        sns.heatmap(
            table, ax=ax, annot=True, fmt=".3f", cmap="viridis", vmin=vmin, vmax=1.0,
            linewidths=0.5, linecolor="white", cbar=last, annot_kws={"fontsize": 8},
            cbar_kws={"label": _METRICS[metric]} if last else None,
        )
        # seaborn leaves missing cells blank; say so instead of leaving a hole
        ax.set_facecolor("0.92")
        for i, j in zip(*np.nonzero(table.isna().to_numpy())):
            ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=8,
                    color="0.45")
        n_own = frame["method"].nunique()
        if len(table) > n_own:
            ax.axhline(n_own, color="0.15", linewidth=2)
        ax.set_xlabel("ratio r (visible sizes ≤ target / r)")
        ax.set_ylabel("method")
        ax.tick_params(axis="y", rotation=0)
        ax.set_title(f"{_METRICS[metric]}: {escape_mathtext(dataset)}")

    n_rows = results["method"].nunique() + (paper["method"].nunique() if paper is not None else 0)
    return draw, (0.9 * results["ratio"].nunique() + 3.0, 0.42 * n_rows + 1.6)


def _check_results(results, metric):
    """Raise ConfigError unless ``results`` is a benchmark table with ``metric``."""
    if metric not in _METRICS:
        raise ConfigError(
            f"`metric` must be one of {', '.join(_METRICS)}, got {metric!r}."
        )
    check_columns(results, "results", _RESULT_COLUMNS + (metric,))
    if results.empty:
        raise ConfigError("`results` has no rows; pass run_benchmark(...).results.")
    dup = results.duplicated(["dataset", "method", "ratio"])
    if dup.any():
        row = results[dup].iloc[0]
        raise ConfigError(
            f"`results` has several rows for dataset={row['dataset']!r}, "
            f"method={row['method']!r}, ratio={row['ratio']!r}; keep one row per "
            "(dataset, method, ratio), e.g. with drop_duplicates."
        )


def _read_published(published, metric):
    """Return the published rows for ``metric`` (long format), or None."""
    if published is None:
        return None
    if isinstance(published, (str, Path)):
        try:
            published = pd.read_csv(published)
        except OSError as exc:
            raise ConfigError(
                f"`published` could not be read from {str(published)!r} ({exc}); pass the "
                "path of published_selection.csv or a DataFrame."
            ) from exc
    check_columns(published, "published", ("dataset", "method", "metric", "ratio", "value"))
    keep = published["metric"].astype(str).str.lower() == _METRICS[metric].lower()
    return published[keep].assign(value=_finite_column(published[keep], "value", "published"))


def _metric_table(frame, metric, paper, dataset):
    """Methods × ratios table of one dataset, published rows appended."""
    methods = list(pd.unique(frame["method"]))
    ratios = sorted(pd.unique(frame["ratio"]))
    table = frame.pivot(index="method", columns="ratio", values=metric).reindex(
        index=methods, columns=ratios
    ).astype(float)
    if paper is not None:
        mine = paper[paper["dataset"].astype(str).str.lower() == str(dataset).lower()]
        if not mine.empty:
            extra = mine.pivot_table(index="method", columns="ratio", values="value",
                                     aggfunc="first", sort=False)
            extra = extra.reindex(columns=ratios).astype(float)
            extra.index = [f"{m} (paper)" for m in extra.index]
            table = pd.concat([table, extra])
    table.index.name = "method"
    table.columns.name = "ratio"
    return table


def plot_pareto(results, *, metric="pearson", ax=None):
    """Plot cost fraction against a selection metric for one dataset, Pareto front highlighted.

    One point per (method, ratio); each method's points are joined in cost
    order and the front (no other point is both cheaper and better) is drawn as
    a black step line with ringed points labelled by ratio. Zero cost (e.g.
    zero-shot) is shown on a symmetric-log axis whose linear part holds 0.

    Parameters
    ----------
    results : pandas.DataFrame
        ``run_benchmark(...).results`` of one dataset (several: `plot_pareto_grid`).
    metric : {"pearson", "relacc", "spearman"}, default "pearson"
        Metric on the y axis (higher is better).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made otherwise.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ConfigError
        If the metric is unknown, a column is missing, a value is not finite,
        a cost is negative, or ``results`` holds several datasets.
    """
    draw, data = _pareto_panel(results, metric)
    return _one_dataset(data, draw, ax, _PARETO_SIZE, arg="results", name="plot_pareto")


def plot_pareto_grid(results, *, metric="pearson"):
    """One cost/metric panel per dataset (see `plot_pareto`), one colour per method across panels.

    Parameters
    ----------
    results : pandas.DataFrame
        ``run_benchmark(...).results``: one row per (dataset, method, ratio).
    metric : {"pearson", "relacc", "spearman"}, default "pearson"
        Metric on the y axis (higher is better).

    Returns
    -------
    seaborn.FacetGrid
        One column per dataset, also when ``results`` holds one.

    Raises
    ------
    ConfigError
        As `plot_pareto`, except that several datasets are welcome.
    """
    draw, data = _pareto_panel(results, metric)
    return _dataset_grid(data, draw, _PARETO_SIZE, arg="results")


def _pareto_panel(results, metric):
    """The panel drawer ``draw(ax, frame, dataset, last)`` and the checked results with ``_cost``, ``_score``."""
    _check_results(results, metric)
    cost = _finite_column(results, "cost_fraction", "results")
    score = _finite_column(results, metric, "results")
    if (cost < 0).any():
        row = results.index[np.flatnonzero(cost < 0)[0]]
        raise ConfigError(
            f"`results` row {row!r} has cost_fraction={cost[cost < 0][0]!r}; costs "
            "must be non-negative fractions of the full fine-tuning cost."
        )
    data = results.assign(_cost=cost, _score=score)
    methods = list(pd.unique(data["method"]))
    colors = dict(zip(methods, sns.color_palette("tab10" if len(methods) <= 10 else "husl",
                                                 len(methods))))
    positive = cost[cost > 0]

    def draw(ax, frame, dataset, last):
        for method in methods:
            sub = frame[frame["method"] == method].sort_values("_cost")
            if sub.empty:
                continue
            ax.plot(sub["_cost"], sub["_score"], color=colors[method], marker="o",
                    markersize=5, linewidth=1.0, alpha=0.85, label=escape_mathtext(method), zorder=2)
        front = _pareto_front(frame)
        ax.step(front["_cost"], front["_score"], where="post", color="black",
                linewidth=1.4, label="Pareto front", zorder=3)
        ax.scatter(front["_cost"], front["_score"], s=90, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=4)
        for _, row in front.iterrows():
            ax.annotate(f"r={row['ratio']}", (row["_cost"], row["_score"]),
                        textcoords="offset points", xytext=(4, -11), fontsize=7)
        if (frame["_cost"] == 0).any() and positive.size:
            # symlog keeps 0 on the axis; its linear part ends at the power of ten
            # at or below the cheapest positive cost, so those points stay on the
            # log part.
            ax.set_xscale("symlog", linthresh=10 ** math.floor(math.log10(positive.min())),
                          linscale=0.4)
        elif positive.size:
            ax.set_xscale("log")
        ax.set_xlabel("cost fraction of fine-tuning all on target (log)")
        ax.set_ylabel(f"{_METRICS[metric]} (higher is better)")
        ax.set_title(f"Cost vs {_METRICS[metric]}: {escape_mathtext(dataset)}")
        if last:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                      frameon=False)

    return draw, data


def _pareto_front(frame):
    """Rows that no other row beats on both cost (lower) and score (higher)."""
    ordered = frame.sort_values(["_cost", "_score"], ascending=[True, False])
    best = -np.inf
    keep = []
    for index, score in ordered["_score"].items():
        if score > best:
            keep.append(index)
            best = score
    return ordered.loc[keep]
