"""Seaborn figures for fine-tuning curves, fitted laws and benchmark results.

Every function takes the package's own data structures (the tidy curves table,
a :class:`~lensllm_nb.curve_fits.FitResult` or a dict of fitted laws, the
``run_benchmark`` results and predictions), never modifies them, and returns the
matplotlib Axes it drew on, or a seaborn FacetGrid when it draws one panel per
model or per dataset. matplotlib and seaborn are imported here only, so
``import lensllm_nb`` stays light.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator, NullLocator

from .errors import ConfigError
from .metrics import pearcorr
from .safe_output import escape_mathtext, open_inside

__all__ = [
    "plot_curves",
    "plot_curves_grid",
    "plot_predicted_vs_true",
    "plot_benchmark_heatmap",
    "plot_pareto",
    "plot_predictions",
    "prediction_figure_axes",
    "plot_ranking",
    "plot_coverage",
    "plot_reliability",
    "save_figure",
]

_X_LABEL = "training examples (log)"
_Y_LABEL = "test loss (log)"
_STYLE = "whitegrid"
# gid of the zero-shot markers, so they can be told apart from the curve artists
_ZERO_SHOT_GID = "zero-shot"
# Zero-shot losses within this factor of the curves' y range widen it; farther
# ones are pinned to the edge (see _finish_curve_axes).
_ZERO_SHOT_REACH = 1.6
_Y_MARGIN = 1.04
_GRID_POINTS = 200
# Metrics that run_benchmark reports per (dataset, method, ratio), with the names
# the papers print and that published_selection.csv uses.
_METRICS = {"pearson": "PearCorr", "relacc": "RelAcc", "spearman": "Spearman"}
_RESULT_COLUMNS = ("dataset", "method", "ratio", "cost_fraction")
_PHASE_MARKERS = {"power": "o", "pre-power": "s"}
_SAVE_SUFFIXES = (".png", ".svg", ".pdf")


# --------------------------------------------------------------------------- curves


def plot_curves(
    table,
    fits=None,
    *,
    models=None,
    max_train=None,
    target=None,
    interval=0.9,
    ax=None,
    palette=None,
    phase=False,
):
    """Plot test loss against training-set size on log-log axes, one colour per model.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table of one dataset (columns ``model``, ``n_train``,
        ``test_loss``; seeds are averaged). Zero-shot rows (``n_train == 0``) are
        drawn as stars on the left spine, since 0 has no place on a log axis.
    fits : FitResult or dict, optional
        The result of :func:`lensllm_nb.curve_fits.fit_curves` (its ``laws`` are
        used) or a dict ``model -> fitted law``. Each law is drawn as a line over
        a dense grid from the smallest positive size to ``target`` (or the largest
        size), with its prediction interval as a band and its phase-transition
        size ``d_star_`` as a dotted vertical line and a diamond on the line. A
        model without a law is drawn as points only and says ``(no fit)``.
    models : str or list of str, optional
        Models to draw, in this order; all models of ``table`` by default.
    max_train : int, optional
        Largest visible size: points with ``n_train <= max_train`` are filled,
        larger (held-out) ones hollow, and a dashed line marks the boundary.
    target : int, optional
        Size the laws are extrapolated to (dash-dotted line); default: the
        largest size in ``table``.
    interval : float or None, default 0.9
        Level of the prediction band (``law.predict_interval``); ``None`` draws
        no band.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made otherwise.
    palette : str, list or dict, optional
        Seaborn palette name, list of colours, or dict ``model -> colour``;
        default ``"tab10"`` up to 10 models, ``"husl"`` above.
    phase : bool, default False
        Mark each point by the phase its model's law assigns it (circle: power,
        square: pre-power). Needs ``fits``.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Raises
    ------
    ConfigError
        If an argument has a value the plot cannot use.
    """
    points, names, laws, colors = _prepare_curves(
        table, fits, models, max_train, target, interval, palette, phase
    )
    x_max = target if target is not None else int(points["n_train"].max())
    ax = _new_axes(ax, figsize=(9.0, 5.5))
    spans = [
        _draw_model(
            ax, points[points["model"] == model], laws.get(model), colors[model],
            max_train=max_train, x_max=x_max, interval=interval, phase=phase,
        )
        for model in names
    ]
    _draw_limits(ax, max_train, target)
    pinned = _finish_curve_axes(ax, points, colors, spans)
    entries = [
        (Line2D([], [], color=colors[m], marker="o"), _model_label(m, fits, laws, pinned))
        for m in names
    ]
    entries += _style_handles(points, fits, max_train, target, interval, phase, pinned)
    ax.legend(
        [h for h, _ in entries], [lab for _, lab in entries],
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
        ncol=1 if len(entries) <= 24 else 2, frameon=False,
    )
    ax.set_title(_curve_title(table, laws))
    return ax


def plot_curves_grid(
    table,
    fits=None,
    *,
    models=None,
    max_train=None,
    target=None,
    interval=0.9,
    palette=None,
    phase=False,
    col_wrap=5,
    height=2.4,
):
    """Plot each model's curve in its own log-log panel (a seaborn FacetGrid).

    Parameters
    ----------
    table, fits, models, max_train, target, interval, palette, phase
        As in :func:`plot_curves`.
    col_wrap : int, default 5
        Panels per row.
    height : float, default 2.4
        Height of each panel in inches.

    Returns
    -------
    seaborn.FacetGrid
        One panel per model, titled with the model name; y axes are not shared
        because losses of different models span different ranges.

    Raises
    ------
    ConfigError
        If an argument has a value the plot cannot use.
    """
    for name, value, kinds in (("col_wrap", col_wrap, (int,)), ("height", height, (int, float))):
        if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
            raise ConfigError(
                f"`{name}` must be a positive {'integer' if name == 'col_wrap' else 'number'}, "
                f"got {value!r}; e.g. {name}={5 if name == 'col_wrap' else 2.4}."
            )
    points, names, laws, colors = _prepare_curves(
        table, fits, models, max_train, target, interval, palette, phase
    )
    x_max = target if target is not None else int(points["n_train"].max())
    with sns.axes_style(_STYLE):
        grid = sns.FacetGrid(
            points, col="model", col_order=names, col_wrap=min(col_wrap, len(names)),
            height=height, aspect=1.25, sharex=True, sharey=False,
        )
    pinned = {}
    for model, ax in grid.axes_dict.items():
        span = _draw_model(
            ax, points[points["model"] == model], laws.get(model), colors[model],
            max_train=max_train, x_max=x_max, interval=interval, phase=phase,
        )
        _draw_limits(ax, max_train, target)
        pinned.update(_finish_curve_axes(ax, points[points["model"] == model], colors, [span]))
        ax.set_title(_model_label(model, fits, laws, pinned), fontsize="small")
    grid.set_axis_labels(_X_LABEL, _Y_LABEL)
    style = _style_handles(points, fits, max_train, target, interval, phase, pinned)
    if style:
        grid.figure.legend(
            [h for h, _ in style], [lab for _, lab in style], loc="upper center",
            ncol=min(len(style), 6), bbox_to_anchor=(0.5, -0.03), frameon=False,
            fontsize="small",
        )
    # The key sits below the panels so that it never runs into the title above them.
    grid.figure.suptitle(_curve_title(table, laws), y=1.02)
    return grid


def _prepare_curves(table, fits, models, max_train, target, interval, palette, phase):
    """Validate the curve-plot arguments; return points, model order, laws, colours.

    ``laws`` is a dict (empty without ``fits``); every argument is checked before
    anything is drawn.
    """
    points, names = _curve_points(table, models)
    laws = _resolve_laws(fits, phase)
    _check_sizes(max_train, target, interval)
    return points, names, laws, _model_colors(names, palette)


def _model_label(model, fits, laws, pinned):
    """Legend label or panel title of a model.

    Says when its fit is missing and gives the zero-shot loss when its marker is
    pinned to the edge of the y range.
    """
    notes = [] if fits is None or model in laws else ["no fit"]
    if model in pinned:
        notes.append(f"zero-shot {pinned[model]:.3g} off range")
    name = escape_mathtext(model)
    return f"{name} ({', '.join(notes)})" if notes else name


def _curve_points(table, models):
    """Return the seed-averaged points of the selected models and their order."""
    _check_frame(table, "table", ("model", "n_train", "test_loss"))
    if "dataset" in table.columns and table["dataset"].nunique() > 1:
        found = ", ".join(map(str, table["dataset"].unique()))
        raise ConfigError(
            f"`table` holds several datasets ({found}); curves of one dataset share "
            "an axis, so filter first, e.g. table[table.dataset == 'flan']."
        )
    if table.empty:
        raise ConfigError("`table` has no rows; pass a curves table with observations.")
    available = list(pd.unique(table["model"]))
    names = _select_models(models, available)
    chosen = table[table["model"].isin(names)]
    losses = pd.to_numeric(chosen["test_loss"], errors="coerce")
    sizes = pd.to_numeric(chosen["n_train"], errors="coerce")
    bad = ~(np.isfinite(losses) & (losses > 0) & np.isfinite(sizes) & (sizes >= 0))
    if bad.any():
        row = chosen.index[np.flatnonzero(bad.to_numpy())[0]]
        raise ConfigError(
            f"`table` row {row!r} has n_train={chosen.at[row, 'n_train']!r}, "
            f"test_loss={chosen.at[row, 'test_loss']!r}; losses must be positive and "
            "finite and sizes non-negative (validate with curves.validate_curves)."
        )
    points = (
        pd.DataFrame({"model": chosen["model"], "n_train": sizes, "test_loss": losses})
        .groupby(["model", "n_train"], sort=True, as_index=False)["test_loss"].mean()
    )
    has_curve = set(points[points["n_train"] > 0]["model"].unique())  # once: 10,000 candidates took minutes
    lacking = [m for m in names if m not in has_curve]
    if lacking:
        raise ConfigError(
            f"`table` has only zero-shot rows (n_train == 0) for {lacking[:3]!r}; a curve "
            "needs positive sizes, so drop those models or pass `models` without them."
        )
    return points, names


def _select_models(models, available):
    """Return the models to draw, checking that each one is in the table."""
    if models is None:
        return available
    names = [models] if isinstance(models, str) else list(models)
    missing = [m for m in names if m not in set(available)]
    if missing or not names:
        shown = ", ".join(map(str, available[:5])) + (", ..." if len(available) > 5 else "")
        raise ConfigError(
            f"`models` must name models of `table`, got {missing or names!r}; "
            f"available: {shown}."
        )
    return list(dict.fromkeys(names))


def _resolve_laws(fits, phase):
    """Return ``model -> law`` from a FitResult or dict (empty when no fits)."""
    if fits is None:
        if phase:
            raise ConfigError(
                "`phase=True` needs `fits`, got fits=None; pass the result of "
                "curve_fits.fit_curves or set phase=False."
            )
        return {}
    laws = getattr(fits, "laws", fits)
    if not isinstance(laws, dict):
        raise ConfigError(
            f"`fits` must be a FitResult or a dict model -> fitted law, got "
            f"{type(fits).__name__}; pass curve_fits.fit_curves(table) or its .laws."
        )
    for model, law in laws.items():
        if not callable(getattr(law, "predict", None)):
            raise ConfigError(
                f"`fits[{model!r}]` must be a fitted law with .predict, got "
                f"{type(law).__name__}; pass laws from curve_fits.fit_curves."
            )
    return laws


def _check_sizes(max_train, target, interval):
    """Validate the size and interval arguments shared by the curve plots."""
    for name, value in (("max_train", max_train), ("target", target)):
        if value is None:
            continue
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not ok or value < (0 if name == "max_train" else 1):
            raise ConfigError(
                f"`{name}` must be a {'non-negative' if name == 'max_train' else 'positive'} "
                f"integer number of examples or None, got {value!r}."
            )
    if interval is not None and not (
        isinstance(interval, (int, float)) and not isinstance(interval, bool)
        and 0 < interval < 1
    ):
        raise ConfigError(
            f"`interval` must be a level between 0 and 1 (e.g. 0.9) or None, got {interval!r}."
        )


def _draw_model(ax, points, law, color, *, max_train, x_max, interval, phase):
    """Draw one model's positive-size points, law line, band and D* on ``ax``.

    Returns
    -------
    tuple of float
        The lowest and highest loss of the points and the law line (not the
        band), from which the y range is set.
    """
    pos = points[points["n_train"] > 0]
    sizes = pos["n_train"].to_numpy(float)
    losses = pos["test_loss"].to_numpy(float)
    visible = np.ones(len(sizes), bool) if max_train is None else sizes <= max_train
    phases = np.asarray(law.phase(sizes)) if phase and law is not None else None
    styles = _PHASE_MARKERS.items() if phases is not None else [(None, "o")]
    for marker_phase, marker in styles:
        keep = np.ones(len(sizes), bool) if marker_phase is None else phases == marker_phase
        for shown, face in ((True, color), (False, "none")):
            sel = keep & (visible == shown)
            if sel.any():
                ax.scatter(
                    sizes[sel], losses[sel], marker=marker, s=28, facecolors=face,
                    edgecolors=color, linewidths=1.2, zorder=3,
                )
    if law is None:
        return float(losses.min()), float(losses.max())
    grid = np.geomspace(sizes.min(), max(x_max, sizes.min()), _GRID_POINTS)
    line = np.asarray(law.predict(grid), float)
    ax.plot(grid, line, color=color, linewidth=1.5, zorder=2)
    if interval is not None:
        low, high = law.predict_interval(grid, level=interval)
        # An unbounded interval (as many parameters as points) is left undrawn.
        bounded = np.isfinite(high)
        ax.fill_between(grid, low, np.where(bounded, high, np.nan), where=bounded, color=color, alpha=0.15,
                        linewidth=0, zorder=1)
    d_star = getattr(law, "d_star_", None)
    if d_star is not None and np.isfinite(d_star) and grid[0] <= d_star <= grid[-1]:
        ax.axvline(d_star, color=color, linestyle=":", linewidth=1.1, alpha=0.8, zorder=1)
        ax.plot(
            [d_star], np.asarray(law.predict(np.array([d_star])), float), marker="D",
            markersize=6, color=color, markeredgecolor="black", markeredgewidth=0.5,
            linestyle="none", zorder=4,
        )
    return float(min(losses.min(), line.min())), float(max(losses.max(), line.max()))


def _draw_limits(ax, max_train, target):
    """Mark the visible-size limit and the extrapolation target."""
    if max_train is not None and max_train > 0:
        ax.axvline(max_train, color="0.35", linestyle="--", linewidth=1.0, zorder=0)
    if target is not None:
        ax.axvline(target, color="0.35", linestyle="-.", linewidth=1.0, zorder=0)


def _finish_curve_axes(ax, points, colors, spans):
    """Log-log scales, plain tick labels and the y range, then the zero-shot markers.

    The y range covers the points and law lines (``spans``, from
    :func:`_draw_model`) but not the prediction bands, which far from the data
    can reach several times the loss and would flatten the curves; bands are
    clipped instead. Zero-shot losses (``n_train == 0``) have no place on a log
    x axis, so they are drawn last as stars on the left spine. The range widens
    for those within ``_ZERO_SHOT_REACH`` of it; one farther off (mT5 and Switch
    start near 20) becomes a triangle on the top (or bottom) edge, and its value
    goes into the model's label (:func:`_model_label`).

    Returns
    -------
    dict
        ``model -> zero-shot loss`` of the markers pinned to an edge.
    """
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_X_LABEL)
    ax.set_ylabel(_Y_LABEL)
    # Losses rarely span a decade: label minor ticks (2, 3, 4) and write 0.6 or 2
    # rather than 6e-01 or 2x10^0.
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(
        _PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4))
    )
    low = min(lo for lo, _ in spans)
    high = max(hi for _, hi in spans)
    zero = points[points["n_train"] == 0]
    near = zero["test_loss"].between(low / _ZERO_SHOT_REACH, high * _ZERO_SHOT_REACH)
    low = min(low, zero.loc[near, "test_loss"].min()) if near.any() else low
    high = max(high, zero.loc[near, "test_loss"].max()) if near.any() else high
    ax.set_ylim(low / _Y_MARGIN, high * _Y_MARGIN)
    pinned = {}
    for model, loss, inside in zip(zero["model"], zero["test_loss"], near):
        if inside:
            xy, marker, transform = (0.0, loss), "*", ax.get_yaxis_transform()
        else:
            # x in axes coordinates (the left spine), y on the top or bottom edge
            xy = (0.025 * len(pinned), 1.0 if loss > high else 0.0)
            marker, transform = ("^" if loss > high else "v"), ax.transAxes
            pinned[model] = float(loss)
        # add_artist, not plot: the markers must not widen the data limits
        ax.add_artist(Line2D(
            [xy[0]], [xy[1]], marker=marker, markersize=11 if marker == "*" else 8,
            color=colors[model], markeredgecolor="black", markeredgewidth=0.5,
            linestyle="none", transform=transform, clip_on=False, zorder=5,
            gid=_ZERO_SHOT_GID,
        ))
    return pinned


class _PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (0.6, 2, 30) on the ticks LogFormatter labels."""

    def __call__(self, x, pos=None):
        return f"{x:.3g}" if super().__call__(x, pos) else ""


def _style_handles(points, fits, max_train, target, interval, phase, pinned):
    """Return (handle, label) legend entries explaining markers and lines."""
    grey = "0.3"
    out = []
    if phase:
        for name, marker in _PHASE_MARKERS.items():
            out.append((Line2D([], [], color=grey, marker=marker, linestyle="none"),
                        f"{name} phase"))
    elif max_train is not None:
        out.append((Line2D([], [], color=grey, marker="o", linestyle="none"),
                    f"visible (≤ {max_train:,})"))
    if max_train is not None:
        out.append((Line2D([], [], color=grey, marker="o", markerfacecolor="none",
                           linestyle="none"), "held out"))
    if (points["n_train"] == 0).any():
        out.append((Line2D([], [], color=grey, marker="*", markersize=11, linestyle="none"),
                    "zero-shot (n=0, on left axis)"))
    if pinned:
        out.append((Line2D([], [], color=grey, marker="^", linestyle="none"),
                    "zero-shot off the y range"))
    if fits is not None:
        out.append((Line2D([], [], color=grey), "fitted law"))
        if interval is not None:
            out.append((Patch(color=grey, alpha=0.25), f"{interval:.0%} prediction interval"))
        out.append((Line2D([], [], color=grey, marker="D", linestyle=":"),
                    "D* (phase transition)"))
    if max_train is not None and max_train > 0:
        out.append((Line2D([], [], color="0.35", linestyle="--"), "max_train"))
    if target is not None:
        out.append((Line2D([], [], color="0.35", linestyle="-."), "target"))
    return out


def _curve_title(table, laws):
    """Title naming the dataset and the law drawn."""
    title = "Fine-tuning curves"
    if "dataset" in table.columns and table["dataset"].nunique() == 1:
        title += f": {escape_mathtext(table['dataset'].iloc[0])}"
    if laws:
        kinds = sorted({type(law).__name__ for law in laws.values()})
        title += f" ({', '.join(kinds)} fit)"
    return title


# ------------------------------------------------------------- predicted vs true


def plot_predicted_vs_true(predictions, *, ax=None, hue="method"):
    """Scatter predicted against true loss with the y = x diagonal and Pearson r.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``model``, ``predicted``, ``true``, optionally ``method`` and
        ``ratio`` (e.g. ``run_benchmark(...).predictions`` filtered to one ratio).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made otherwise.
    hue : str or None, default "method"
        Column that colours the points; each legend entry gives that group's
        Pearson r. The default ``"method"`` is ignored when the column is absent;
        any other missing column is an error.

    Returns
    -------
    matplotlib.axes.Axes
        The axes; the title gives Pearson r over all points as ``r=0.912``.

    Raises
    ------
    ConfigError
        If a column is missing, ``hue`` is unknown or a value is not finite.
    """
    _check_frame(predictions, "predictions", ("model", "predicted", "true"))
    if predictions.empty:
        raise ConfigError("`predictions` has no rows; pass run_benchmark(...).predictions.")
    if hue is not None and hue not in predictions.columns:
        if hue != "method":
            raise ConfigError(
                f"`hue` must be a column of `predictions` or None, got {hue!r}; "
                f"columns: {', '.join(map(str, predictions.columns))}."
            )
        hue = None
    pred = _finite_column(predictions, "predicted", "predictions")
    true = _finite_column(predictions, "true", "predictions")
    ax = _new_axes(ax, figsize=(6.0, 5.5))
    groups = [(None, np.ones(len(pred), bool))] if hue is None else [
        (level, (predictions[hue] == level).to_numpy())
        for level in pd.unique(predictions[hue])
    ]
    colors = sns.color_palette("tab10" if len(groups) <= 10 else "husl", len(groups))
    for (level, sel), color in zip(groups, colors):
        label = None if level is None else f"{escape_mathtext(level)} (r={_format_r(pred[sel], true[sel])})"
        ax.scatter(pred[sel], true[sel], s=30, color=color, alpha=0.8,
                   edgecolors="white", linewidths=0.5, label=label, zorder=3)
    low = min(pred.min(), true.min())
    high = max(pred.max(), true.max())
    pad = 0.05 * (high - low) if high > low else 0.05 * abs(high) or 0.05
    lims = (low - pad, high + pad)
    ax.plot(lims, lims, color="0.4", linestyle="--", linewidth=1.0, label="y = x", zorder=2)
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("predicted loss")
    ax.set_ylabel("true loss")
    pooled = "pooled " if len(groups) > 1 else ""
    title = f"Predicted vs true loss ({pooled}r={_format_r(pred, true)}, n={len(pred)}"
    if "ratio" in predictions.columns and predictions["ratio"].nunique() == 1:
        title += f", ratio {predictions['ratio'].iloc[0]}"
    if "dataset" in predictions.columns and predictions["dataset"].nunique() == 1:
        title += f", {escape_mathtext(predictions['dataset'].iloc[0])}"
    ax.set_title(title + ")")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def _finite_column(frame, column, arg):
    """Return ``frame[column]`` as floats, refusing NaN or inf."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = list(frame.index[bad][:3])
        raise ConfigError(
            f"`{arg}` column `{column}` has {int(bad.sum())} non-finite or non-numeric "
            f"values (rows {rows}); drop or fix those rows before plotting."
        )
    return values


def _format_r(pred, true):
    """Pearson r as the benchmark computes it, to 3 decimals; ``n/a`` below 2 points."""
    if len(pred) < 2:
        return "n/a"
    return f"{pearcorr(pred, true):.3f}"


# ------------------------------------------------------------ benchmark heatmap


def plot_benchmark_heatmap(results, metric="pearson", *, ax=None, published=None):
    """Heatmap of a selection metric, methods × ratios, with annotated values.

    Parameters
    ----------
    results : pandas.DataFrame
        ``run_benchmark(...).results``: one row per (dataset, method, ratio) with
        the metric columns.
    metric : {"pearson", "relacc", "spearman"}, default "pearson"
        Metric to show.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (one dataset only); a new figure is made otherwise.
    published : pandas.DataFrame, str or Path, optional
        Published figures in long format (``dataset, method, metric, ratio,
        value``, e.g. ``published_selection.csv``) or a path to such a CSV. Rows
        of the same dataset (case-insensitive) and metric are added below a
        separator as ``"<method> (paper)"``; ratios the results lack are left out.
        Cells without a value (NaN, or a ratio a paper row lacks) read ``n/a``.

    Returns
    -------
    matplotlib.axes.Axes or seaborn.FacetGrid
        The axes for one dataset; a FacetGrid with one panel per dataset when
        ``results`` holds several.

    Raises
    ------
    ConfigError
        If the metric is unknown, a column is missing, a (dataset, method,
        ratio) appears twice, or ``ax`` is given for several datasets.
    """
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
    size = (0.9 * results["ratio"].nunique() + 3.0, 0.42 * n_rows + 1.6)
    # no grid lines: they would show through missing cells
    return _per_dataset(results, draw, ax, size, style="white")


def _check_results(results, metric):
    """Raise ConfigError unless ``results`` is a benchmark table with ``metric``."""
    if metric not in _METRICS:
        raise ConfigError(
            f"`metric` must be one of {', '.join(_METRICS)}, got {metric!r}."
        )
    _check_frame(results, "results", _RESULT_COLUMNS + (metric,))
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
    _check_frame(published, "published", ("dataset", "method", "metric", "ratio", "value"))
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


# ---------------------------------------------------------------------- pareto


def plot_pareto(results, *, metric="pearson", ax=None):
    """Plot cost fraction against a selection metric, Pareto front highlighted.

    One point per (method, ratio); each method's points are joined in cost
    order and the front (no other point is both cheaper and better) is drawn as
    a black step line with ringed points labelled by ratio. Zero cost (e.g.
    zero-shot) is shown on a symmetric-log axis whose linear part holds 0.

    Parameters
    ----------
    results : pandas.DataFrame
        ``run_benchmark(...).results``.
    metric : {"pearson", "relacc", "spearman"}, default "pearson"
        Metric on the y axis (higher is better).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (one dataset only); a new figure is made otherwise.

    Returns
    -------
    matplotlib.axes.Axes or seaborn.FacetGrid
        The axes for one dataset; a FacetGrid with one panel per dataset when
        ``results`` holds several.

    Raises
    ------
    ConfigError
        If the metric is unknown, a column is missing, a value is not finite,
        a cost is negative, or ``ax`` is given for several datasets.
    """
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

    return _per_dataset(data, draw, ax, (8.0, 5.0))


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


# ------------------------------------------------------------ engine predictions


def plot_predictions(table, predictions, *, fits=None, highlight=8, axes=None, overlay_name=None):
    """Curves up to the budget, and the engine's prediction at the target with interval bars.

    The left panel shows the seed-mean curves (filled: visible, hollow: held
    out); the right one each candidate's predicted loss at the target with its
    interval, best first, and the true loss (a black cross) when it was measured.
    Drawn with few artists (one line collection for all curves, one scatter per
    marker style, one collection of bars) so that the comparison widget can
    redraw 30 candidates quickly on reused axes.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves of one dataset (seeds are averaged; zero-shot rows are left
        out, since 0 has no place on a log axis).
    predictions : CandidatePredictions
        :func:`lensllm_nb.predict.predict_candidates` on ``table``.
    fits : FitResult or dict, optional
        Law fits drawn as dashed lines for the highlighted models: an overlay,
        named ``overlay_name`` in the key, never the prediction.
    highlight : int, default 8
        The best-predicted candidates drawn in colour and named in the key; the
        others are grey.
    axes : pair of matplotlib.axes.Axes, optional
        (curves, target) axes to draw on, cleared first; a new figure otherwise.
    overlay_name : str, optional
        Key label of the law-fit lines, e.g. ``"rectified law fit"``.

    Returns
    -------
    tuple of matplotlib.axes.Axes
        The curves axes and the target axes.
    """
    frame = predictions.frame
    points = _curve_points(table, list(frame["model"]))[0]
    points = points[points["n_train"] > 0]
    colors = _highlight_colors(list(frame["model"]), highlight)
    ax, strip = _prediction_axes(axes)
    _draw_curve_collection(ax, points, colors, predictions.max_train)
    if fits is not None:
        _draw_overlay(ax, _resolve_laws(fits, False), frame, colors, highlight, points, predictions.target)
    _draw_target_strip(strip, table, frame, colors, predictions.target)
    _finish_prediction_axes(ax, strip, points, frame, predictions, colors, highlight,
                            overlay_name if fits is not None else None)
    return ax, strip


def _prediction_axes(axes):
    """The (curves, target) axes: given ones emptied of their data, or a new figure.

    Reused axes keep their scales, ticks and style; only the data artists, key
    and titles go, since re-creating the ticks costs more than drawing the curves.
    """
    if axes is None:
        with sns.axes_style(_STYLE):
            fig = plt.figure(figsize=(10.5, 4.6))
            return prediction_figure_axes(fig)
    for ax in axes:
        for artist in [*ax.collections, *ax.lines, *ax.texts]:
            artist.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    return axes


def prediction_figure_axes(fig):
    """Add the (curves, target) axes of :func:`plot_predictions` to ``fig``, leaving room for the key."""
    grid = fig.add_gridspec(1, 2, width_ratios=(3.2, 1.0), left=0.07, right=0.62, top=0.9, bottom=0.13,
                            wspace=0.04)
    with sns.axes_style(_STYLE):
        ax = fig.add_subplot(grid[0])
        strip = fig.add_subplot(grid[1], sharey=ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Unlabelled minor ticks on the size axis only cost drawing time.
    ax.xaxis.set_minor_locator(NullLocator())
    # Plain labels (1k, 10k, 1M): mathtext powers of ten take longer to draw than the data.
    ax.xaxis.set_major_formatter(FuncFormatter(_size_label))
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    strip.tick_params(axis="y", which="both", labelleft=False)
    strip.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    ax.set_xlabel(_X_LABEL)
    ax.set_ylabel(_Y_LABEL)
    return ax, strip


def _size_label(x, pos=None):
    """A training-set size as 200, 10k or 2M."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:g}{unit}"
    return f"{x:g}"


def _highlight_colors(models, highlight):
    """Colours of the first ``highlight`` models (best first); light grey for the rest."""
    top = models[:highlight]
    palette = sns.color_palette("tab10" if len(top) <= 10 else "husl", max(len(top), 1))
    colors = {m: (0.78, 0.78, 0.78) for m in models}
    colors.update(dict(zip(top, palette)))
    return colors


def _draw_curve_collection(ax, points, colors, max_train):
    """All curves as one line collection, visible points filled and held-out ones hollow."""
    # Points are sorted by model: split the arrays once instead of selecting per model.
    names, starts = np.unique(points["model"].to_numpy(), return_index=True)
    xy = np.split(points[["n_train", "test_loss"]].to_numpy(float), starts[1:])
    # Grey curves first, so that the highlighted ones lie on top.
    order = sorted(range(len(names)), key=lambda i: colors[names[i]] != (0.78, 0.78, 0.78))
    ax.add_collection(LineCollection([xy[i] for i in order], colors=[colors[names[i]] for i in order],
                                     linewidths=1.0, zorder=2))
    shown = points["n_train"] <= max_train
    for keep, hollow in ((shown, False), (~shown, True)):
        sub = points[keep]
        edge = [colors[m] for m in sub["model"]]
        ax.scatter(sub["n_train"], sub["test_loss"], s=14, c="none" if hollow else edge, edgecolors=edge,
                   linewidths=0.9, zorder=3)


def _draw_overlay(ax, laws, frame, colors, highlight, points, target):
    """Dashed law-fit lines of the highlighted models (one collection)."""
    grid = np.geomspace(points["n_train"].min(), target, 60)
    lines, line_colors = [], []
    for model in frame["model"][:highlight]:
        law = laws.get(model)
        if law is not None:
            lines.append(np.column_stack([grid, np.asarray(law.predict(grid), float)]))
            line_colors.append(colors[model])
    ax.add_collection(LineCollection(lines, colors=line_colors, linestyles="--", linewidths=1.0, zorder=1))


def _draw_target_strip(strip, table, frame, colors, target):
    """Each candidate's interval bar and prediction at the target, best first; the truth as a cross."""
    x = np.arange(1, len(frame) + 1)
    model_colors = [colors[m] for m in frame["model"]]
    strip.add_collection(LineCollection([[(xi, lo), (xi, hi)] for xi, lo, hi in
                                         zip(x, frame["low"], frame["high"])],
                                        colors=model_colors, linewidths=2.0, zorder=2))
    strip.scatter(x, frame["predicted"], marker="D", s=20, c=model_colors, edgecolors="black",
                  linewidths=0.4, zorder=3)
    at = table[table["n_train"] == target].groupby("model")["test_loss"].mean().reindex(frame["model"])
    if at.notna().any():
        strip.scatter(x, at.to_numpy(float), marker="x", s=22, c="black", linewidths=1.0, zorder=4)
    strip.set_xlim(0.3, len(frame) + 0.7)
    strip.set_xlabel(f"rank (loss at {target:,})")


def _finish_prediction_axes(ax, strip, points, frame, predictions, colors, highlight, overlay_name):
    """Ranges, budget and target lines, key and titles of :func:`plot_predictions`."""
    losses = np.concatenate([points["test_loss"].to_numpy(float), frame["predicted"].to_numpy(float)])
    # Bars far from every loss would flatten the curves: they are clipped.
    low = max(min(losses.min(), frame["low"].min()), losses.min() / 1.5)
    high = min(max(losses.max(), frame["high"].max()), losses.max() * 1.5)
    ax.set_ylim(low / _Y_MARGIN, high * _Y_MARGIN)
    ax.set_xlim(points["n_train"].min() / 1.3, predictions.target * 1.5)
    _draw_limits(ax, predictions.max_train, predictions.target)
    # A figure title, so that it may run over both panels.
    ax.figure.suptitle(f"{escape_mathtext(predictions.dataset)}: {escape_mathtext(predictions.method)} predicts "
                       f"the loss at {predictions.target:,} from sizes ≤ {predictions.max_train:,}",
                       fontsize="medium", x=0.07, y=0.98, ha="left")
    grey = "0.3"
    entries = [(Line2D([], [], color=colors[m], marker="D", linewidth=2.0),
                f"{i}. {escape_mathtext(m)}  p_best {p:.2f}")
               for i, (m, p) in enumerate(zip(frame["model"][:highlight], frame["p_best"]), start=1)]
    if len(frame) > highlight:
        entries.append((Line2D([], [], color=colors[frame["model"].iloc[-1]], marker="D"),
                        f"{len(frame) - highlight} other candidates"))
    entries += [(Line2D([], [], color=grey, marker="o", linestyle="none"), f"visible (≤ {predictions.max_train:,})"),
                (Line2D([], [], color=grey, marker="o", markerfacecolor="none", linestyle="none"), "held out"),
                (Line2D([], [], color=grey, marker="D", linewidth=2.0), f"prediction, {predictions.level:.0%} interval"),
                (Line2D([], [], color="black", marker="x", linestyle="none"), "true loss at the target")]
    if overlay_name:
        entries.append((Line2D([], [], color=grey, linestyle="--"), f"{overlay_name} (overlay, not the prediction)"))
    strip.legend([h for h, _ in entries], [lab for _, lab in entries], loc="upper left",
                 bbox_to_anchor=(1.05, 1.0), fontsize="small", frameon=False)


def plot_ranking(ranking, *, ax=None, top=None):
    """Candidates best first: predicted loss with its interval bar, ``p_best`` beside it.

    Parameters
    ----------
    ranking : pandas.DataFrame
        :func:`lensllm_nb.views.ranking_table` or ``CandidatePredictions.frame``
        (columns model, predicted, low, high, p_best; ``true`` is drawn as a cross
        when present).
    ax : matplotlib.axes.Axes, optional
    top : int, optional
        Draw only the first ``top`` rows.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_frame(ranking, "ranking", ("model", "predicted", "low", "high", "p_best"))
    if ranking.empty:
        raise ConfigError("`ranking` has no rows; pass views.ranking_table(predict_candidates(...)).")
    rows = ranking if top is None else ranking.iloc[:top]
    y = np.arange(len(rows))[::-1]
    ax = _new_axes(ax, figsize=(7.5, 0.28 * len(rows) + 1.4))
    ax.hlines(y, rows["low"], rows["high"], color="tab:blue", linewidth=2.0, zorder=2)
    ax.scatter(rows["predicted"], y, color="tab:blue", marker="D", s=24, zorder=3, label="predicted")
    if "true" in rows.columns:
        ax.scatter(rows["true"], y, color="black", marker="x", s=28, zorder=4, label="true")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_PlainLogFormatter())
    ax.xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    ax.set_xlim(rows["low"].min() / 1.05, rows["high"].max() * 1.3)  # room for the p_best labels
    ax.set_yticks(y, [escape_mathtext(m) for m in rows["model"]], fontsize="small")
    for yi, high, p in zip(y, rows["high"], rows["p_best"]):
        ax.annotate(f"p_best {p:.2f}", (high, yi), textcoords="offset points", xytext=(5, -3), fontsize=7)
    ax.set_xlabel("loss at the target (log)")
    ax.set_title("Ranking, best first: predicted loss, interval and P(best)", fontsize="medium", loc="left")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize="small", frameon=False)
    return ax


def plot_coverage(coverage, *, ax=None):
    """Coverage of the intervals per budget ratio, one line per level, nominal levels dashed.

    Parameters
    ----------
    coverage : pandas.DataFrame
        :func:`lensllm_nb.calibration.coverage` (pooled rows ``ratio == "all"``
        are left out of the lines and given in the key).

    Returns
    -------
    matplotlib.axes.Axes or seaborn.FacetGrid
        One panel per dataset.
    """
    _check_frame(coverage, "coverage", ("dataset", "level", "ratio", "coverage"))
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
        ax.set_title(f"Interval coverage: {escape_mathtext(dataset)}", fontsize="medium")
        # A key per panel: the pooled coverage belongs to the panel's dataset.
        ax.legend(title="level", loc="lower left", fontsize="small", frameon=True)

    return _per_dataset(coverage, draw, ax, (6.5, 4.0))


def plot_reliability(reliability, *, ax=None):
    """Reliability of ``p_best``: mean predicted probability per bin against how often it was the best.

    Parameters
    ----------
    reliability : pandas.DataFrame
        :func:`lensllm_nb.calibration.reliability`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_frame(reliability, "reliability", ("dataset", "mean_p_best", "observed", "n"))
    ax = _new_axes(ax, figsize=(5.5, 5.0))
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1.0, label="calibrated")
    # Most p_best are small among many candidates: a square-root scale spreads them out.
    ax.set_xscale("function", functions=(np.sqrt, np.square))
    ax.set_yscale("function", functions=(np.sqrt, np.square))
    for dataset, frame in reliability.groupby("dataset", sort=False):
        ax.plot(frame["mean_p_best"], frame["observed"], marker="o", label=escape_mathtext(dataset))
        for _, row in frame.iterrows():
            ax.annotate(f"n={row['n']}", (row["mean_p_best"], row["observed"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.0)
    ticks = [0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("predicted P(best), bin mean (square-root scale)")
    ax.set_ylabel("observed share that was the best")
    ax.set_title("Reliability of P(best)", fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")
    return ax


# --------------------------------------------------------------------- shared


def save_figure(fig_or_ax, path, *, dpi=150):
    """Write a figure to PNG, SVG or PDF with a tight bounding box, then close it.

    Parameters
    ----------
    fig_or_ax : matplotlib.figure.Figure, matplotlib.axes.Axes or seaborn.FacetGrid
        What the plot functions return, or its figure.
    path : str or Path
        Output file; the suffix picks the format, parent folders are created.
    dpi : int, default 150
        Resolution of raster output.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ConfigError
        If the suffix is not .png, .svg or .pdf, or ``fig_or_ax`` has no figure.
    """
    path = Path(path)
    if path.suffix.lower() not in _SAVE_SUFFIXES:
        raise ConfigError(
            f"`path` must end in {', '.join(_SAVE_SUFFIXES)}, got {str(path)!r}; "
            "e.g. reports/curves.png."
        )
    fig = fig_or_ax if isinstance(fig_or_ax, Figure) else getattr(fig_or_ax, "figure", None)
    if not isinstance(fig, Figure):
        raise ConfigError(
            f"`fig_or_ax` must be a Figure, Axes or FacetGrid, got "
            f"{type(fig_or_ax).__name__}; pass what a plot function returned."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Through no link planted at `path` (see `open_inside`); the suffix names the format.
    with open_inside(path.parent, path.name, "wb") as handle:
        fig.savefig(handle, format=path.suffix[1:].lower(), dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _check_frame(frame, arg, required):
    """Raise ConfigError unless ``frame`` is a DataFrame with ``required`` columns."""
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"`{arg}` must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"`{arg}` lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, frame.columns)) or 'none'}. Pass a table with "
            f"{', '.join(required)}."
        )


def _new_axes(ax, figsize, style=_STYLE):
    """Return ``ax`` after checking it, or fresh axes in seaborn ``style``."""
    if ax is None:
        with sns.axes_style(style):
            _, ax = plt.subplots(figsize=figsize)
        return ax
    if not isinstance(ax, Axes):
        raise ConfigError(
            f"`ax` must be a matplotlib Axes or None, got {type(ax).__name__}."
        )
    return ax


def _model_colors(names, palette):
    """Map each model to a colour from ``palette``."""
    if isinstance(palette, dict):
        missing = [m for m in names if m not in palette]
        if missing:
            raise ConfigError(
                f"`palette` has no colour for {missing[:3]!r}; give every drawn model a colour."
            )
        return {m: palette[m] for m in names}
    if palette is None:
        palette = "tab10" if len(names) <= 10 else "husl"
    elif not isinstance(palette, str) and len(palette) < len(names):
        raise ConfigError(
            f"`palette` has {len(palette)} colours for {len(names)} models; "
            "pass at least one colour per model or a palette name."
        )
    try:
        colors = sns.color_palette(palette, len(names))
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"`palette` must be a seaborn palette name, a list of colours or a dict "
            f"model -> colour, got {palette!r} ({exc})."
        ) from exc
    return dict(zip(names, colors))


def _per_dataset(results, draw, ax, size, style=_STYLE):
    """Call ``draw(ax, frame, dataset, last)`` once per dataset.

    Returns the Axes for one dataset, a FacetGrid (one column per dataset)
    for several.
    """
    datasets = list(pd.unique(results["dataset"]))
    if len(datasets) == 1:
        ax = _new_axes(ax, figsize=size, style=style)
        draw(ax, results, datasets[0], True)
        return ax
    if ax is not None:
        raise ConfigError(
            f"`ax` was given but `results` holds {len(datasets)} datasets "
            f"({', '.join(map(str, datasets))}); filter to one dataset or leave `ax` "
            "unset to get one panel per dataset."
        )
    with sns.axes_style(style):
        grid = sns.FacetGrid(
            results, col="dataset", col_order=datasets, height=size[1],
            aspect=size[0] / size[1], sharex=False, sharey=False,
        )
    for i, (dataset, panel) in enumerate(grid.axes_dict.items()):
        draw(panel, results[results["dataset"] == dataset], dataset, i == len(datasets) - 1)
    grid.figure.tight_layout()
    return grid
