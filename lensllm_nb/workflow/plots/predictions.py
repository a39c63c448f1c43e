"""The prediction engine's output drawn: predicted against true, curves with predictions, ranking.

``plot_predictions`` draws the candidates' curves, the predictions at the target
and their intervals; ``plot_predicted_vs_true`` and ``plot_ranking`` draw one Axes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from ...analysis.metrics import pearcorr
from ...errors import ConfigError
from ...utils.safe_output import escape_mathtext
from ...utils.validation import check_columns
from ._base import (_curve_points, _draw_limits, _finite_column, _new_axes, _PlainLogFormatter,
    _resolve_laws, _STYLE, _X_LABEL, _Y_LABEL, _Y_MARGIN)
from .palette import model_palette

__all__ = ["plot_predicted_vs_true", "plot_predictions", "prediction_figure_axes", "plot_ranking"]


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
    check_columns(predictions, "predictions", ("model", "predicted", "true"))
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
    (low, high), beyond = _view_range(pred, true)
    shown = np.clip(pred, low, high)
    for (level, sel), color in zip(groups, colors):
        label = None if level is None else f"{escape_mathtext(level)} (r={_format_r(pred[sel], true[sel])})"
        ax.scatter(shown[sel], true[sel], s=30, color=color, alpha=0.8,
                   edgecolors="white", linewidths=0.5, label=label, zorder=3)
    if beyond.any():
        ax.scatter(shown[beyond], true[beyond], s=90, facecolors="none", edgecolors="black", linewidths=1.0,
                   label=f"{int(beyond.sum())} predicted beyond the axes (drawn at the edge)", zorder=4)
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


def _view_range(pred, true):
    """Axis range: the true losses and the predictions, but no prediction more than one true-loss
    range (at least 5% of the loss) beyond them, so one runaway does not squash the rest; and which
    predictions lie beyond it."""
    t_low, t_high = true.min(), true.max()
    span = max(t_high - t_low, 0.05 * abs(t_high)) or 0.05
    low = max(min(pred.min(), t_low), t_low - span)
    high = min(max(pred.max(), t_high), t_high + span)
    return (low, high), (pred < low) | (pred > high)


def _format_r(pred, true):
    """Pearson r as the benchmark computes it, to 3 decimals; ``n/a`` below 2 points."""
    if len(pred) < 2:
        return "n/a"
    return f"{pearcorr(pred, true):.3f}"


def plot_predictions(table, predictions, *, fits=None, highlight=8, axes=None, overlay_name=None, palette=None):
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
        :func:`lensllm_nb.analysis.predict.predict_candidates` on ``table``.
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
    palette : dict, optional
        ``model -> colour`` of every candidate (:func:`model_palette` of a larger set,
        as the widget passes when some are deselected); default that of the drawn ones.

    Returns
    -------
    tuple of matplotlib.axes.Axes
        The curves axes and the target axes.
    """
    frame = predictions.frame
    points = _curve_points(table, list(frame["model"]))[0]
    points = points[points["n_train"] > 0]
    colors = _highlight_colors(list(frame["model"]), highlight, palette)
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


def _highlight_colors(models, highlight, palette=None):
    """The run's colours (:func:`model_palette`) for the first ``highlight`` models (best first); grey for the rest."""
    palette = model_palette(models) if palette is None else palette
    missing = [m for m in models[:highlight] if m not in palette]
    if missing:
        raise ConfigError(f"`palette` has no colour for {missing[:3]!r}; pass model_palette(every candidate).")
    colors = {m: (0.78, 0.78, 0.78) for m in models}
    colors.update({m: palette[m] for m in models[:highlight]})
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
        :func:`lensllm_nb.workflow.tables.ranking_table` or ``CandidatePredictions.frame``
        (columns model, predicted, low, high, p_best; ``true`` is drawn as a cross
        when present).
    ax : matplotlib.axes.Axes, optional
    top : int, optional
        Draw only the first ``top`` rows.

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_columns(ranking, "ranking", ("model", "predicted", "low", "high", "p_best"))
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
