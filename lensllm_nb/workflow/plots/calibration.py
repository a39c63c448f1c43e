"""Calibration of the prediction engine: interval coverage per level and ``p_best`` reliability.

``plot_coverage`` draws one dataset on one Axes; ``plot_coverage_grid`` one panel
per dataset (a FacetGrid, also for one). ``plot_reliability`` puts every dataset
on one Axes.
"""

from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.ticker import NullLocator

from ...utils.safe_output import escape_mathtext
from ...utils.validation import check_columns
from ._base import _dataset_grid, _new_axes, _one_dataset

__all__ = ["plot_coverage", "plot_coverage_grid", "plot_reliability"]

# Inches of one coverage panel (width, height).
_COVERAGE_SIZE = (6.5, 4.0)
# Below this many (model, ratio) predictions a coverage share is mostly noise
# (a 90% interval's binomial standard error passes 5 points).
_FEW_POINTS = 30


def plot_coverage(coverage, *, ax=None):
    """Coverage of the intervals of one dataset per budget ratio, one line per level, nominal levels dashed.

    Parameters
    ----------
    coverage : pandas.DataFrame
        :func:`lensllm_nb.analysis.calibration.coverage` of one dataset (pooled rows
        ``ratio == "all"`` are left out of the lines and given in the key); several
        datasets: `plot_coverage_grid`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made otherwise.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ConfigError
        If a column is missing or ``coverage`` holds several datasets.
    """
    return _one_dataset(coverage, _coverage_panel(coverage), ax, _COVERAGE_SIZE, arg="coverage",
                        name="plot_coverage")


def plot_coverage_grid(coverage):
    """One coverage panel per dataset (see `plot_coverage`), one colour per level across panels.

    Parameters
    ----------
    coverage : pandas.DataFrame
        :func:`lensllm_nb.analysis.calibration.coverage`.

    Returns
    -------
    seaborn.FacetGrid
        One column per dataset, also when ``coverage`` holds one.
    """
    return _dataset_grid(coverage, _coverage_panel(coverage), _COVERAGE_SIZE, arg="coverage")


def _coverage_panel(coverage):
    """The panel drawer ``draw(ax, frame, dataset, last)`` of the checked `coverage`."""
    check_columns(coverage, "coverage", ("dataset", "level", "ratio", "coverage"))
    levels = sorted(coverage["level"].unique())
    palette = dict(zip(levels, sns.color_palette("viridis", len(levels))))

    def draw(ax, frame, dataset, last):
        for level in levels:
            sub = frame[(frame["level"] == level) & (frame["ratio"] != "all")]
            pooled = frame[(frame["level"] == level) & (frame["ratio"] == "all")]["coverage"]
            label = f"{level:.0%}" + (f" (pooled {pooled.iloc[0]:.0%})" if len(pooled) else "")
            ax.plot(sub["ratio"].astype(int), sub["coverage"], marker="o", color=palette[level], label=label)
            ax.axhline(level, color=palette[level], linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        shown = sorted(int(r) for r in frame.loc[frame["ratio"] != "all", "ratio"].unique())
        ax.set_xticks(shown, [str(r) for r in shown])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("ratio r (visible sizes ≤ target / r)")
        ax.set_ylabel("share of true losses inside")
        ax.set_title(f"Interval coverage: {escape_mathtext(dataset)}{_too_few(frame)}", fontsize="medium")
        # A key per panel: the pooled coverage belongs to the panel's dataset.
        ax.legend(title="level", loc="lower left", fontsize="small", frameon=True)

    return draw


def _too_few(frame) -> str:
    """A title line when the pooled coverage rests on fewer than `_FEW_POINTS` (model, ratio) points."""
    if "n" not in frame.columns:
        return ""
    pooled = frame.loc[frame["ratio"] == "all", "n"]
    points = int(pooled.max()) if len(pooled) else int(frame.groupby("level")["n"].sum().max())
    return f"\nonly {points} points: too few to judge" if points < _FEW_POINTS else ""


def plot_reliability(reliability, *, ax=None):
    """Reliability of ``p_best``: mean predicted probability per bin against how often it was the best.

    Parameters
    ----------
    reliability : pandas.DataFrame
        :func:`lensllm_nb.analysis.calibration.reliability`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_columns(reliability, "reliability", ("dataset", "mean_p_best", "observed", "n"))
    ax = _new_axes(ax, figsize=(5.5, 5.0))
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1.0, label="calibrated")
    # Most p_best are small among many candidates: a square-root scale spreads them out.
    ax.set_xscale("function", functions=(np.sqrt, np.square))
    ax.set_yscale("function", functions=(np.sqrt, np.square))
    # Marker area shows how many predictions a bin holds (labels of n collided where bins pile up at 0).
    largest = max(int(reliability["n"].max()), 1)
    for dataset, frame in reliability.groupby("dataset", sort=False):
        (line,) = ax.plot(frame["mean_p_best"], frame["observed"], linewidth=1.2, label=escape_mathtext(dataset))
        ax.scatter(frame["mean_p_best"], frame["observed"], s=12 + 188 * np.sqrt(frame["n"] / largest),
                   color=line.get_color(), alpha=0.8, edgecolors="white", linewidths=0.5, zorder=3)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.0)
    ticks = [0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(f"predicted P(best), bin mean (square-root scale)\nmarker area: predictions in the bin "
                  f"(largest {largest:,})")
    ax.set_ylabel("observed share that was the best")
    ax.set_title("Reliability of P(best)", fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")
    return ax
