"""Measured fine-tuning curves with their fitted laws: one axes, or one panel per model.

Takes the tidy curves table and a :class:`~lensllm_nb.analysis.curve_fits.FitResult`
or a dict of fitted laws; never modifies them. ``plot_curves`` returns the Axes,
``plot_curves_grid`` the seaborn FacetGrid.
"""

from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...errors import ConfigError
from ...utils.safe_output import escape_mathtext
from ._base import (_curve_points, _draw_limits, _new_axes, _PlainLogFormatter, _resolve_laws,
    _STYLE, _X_LABEL, _Y_LABEL, _Y_MARGIN)
from .palette import model_palette

__all__ = ["plot_curves", "plot_curves_grid"]


# gid of the zero-shot markers, so they can be told apart from the curve artists
_ZERO_SHOT_GID = "zero-shot"


# Zero-shot losses within this factor of the curves' y range widen it; farther
# ones are pinned to the edge (see _finish_curve_axes).
_ZERO_SHOT_REACH = 1.6


_GRID_POINTS = 200


_PHASE_MARKERS = {"power": "o", "pre-power": "s"}


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
        The result of :func:`lensllm_nb.analysis.curve_fits.fit_curves` (its ``laws`` are
        used) or a dict ``model -> fitted law``. Each law is drawn as a line over
        a dense grid from the smallest positive size to ``target`` (or the largest
        size), with its prediction interval as a band over the fitted sizes (up
        to ``max_train``; :func:`plot_curves_grid` draws it to the target, one
        model per panel, where it cannot hide the others) and its phase-transition
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
            band_max=max_train if max_train is not None else x_max,
        )
        for model in names
    ]
    _draw_limits(ax, max_train, target)
    pinned = _finish_curve_axes(ax, points, colors, spans)
    entries = [
        (Line2D([], [], color=colors[m], marker="o"), _model_label(m, fits, laws, pinned))
        for m in names
    ]
    entries += _style_handles(points, fits, max_train, target, interval, phase, pinned, band="fitted")
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
            max_train=max_train, x_max=x_max, interval=interval, phase=phase, band_max=x_max,
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
    _check_budget_arguments(max_train, target, interval)
    return points, names, laws, _model_colors(names, palette, table["model"].unique())


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


def _check_budget_arguments(max_train, target, interval):
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


def _draw_model(ax, points, law, color, *, max_train, x_max, interval, phase, band_max):
    """Draw one model's positive-size points, law line, band (up to ``band_max``) and D* on ``ax``.

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
        bounded = np.isfinite(high) & (grid <= band_max * (1 + 1e-9))
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


def _style_handles(points, fits, max_train, target, interval, phase, pinned, band="target"):
    """Return (handle, label) legend entries explaining markers and lines (``band``: where bands end)."""
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
            reach = " (fitted sizes)" if band == "fitted" and max_train is not None else ""
            out.append((Patch(color=grey, alpha=0.25), f"{interval:.0%} prediction interval{reach}"))
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


def _model_colors(names, palette, candidates):
    """Map each model to a colour from ``palette``; by default the run's one colour per candidate."""
    if isinstance(palette, dict):
        missing = [m for m in names if m not in palette]
        if missing:
            raise ConfigError(
                f"`palette` has no colour for {missing[:3]!r}; give every drawn model a colour."
            )
        return {m: palette[m] for m in names}
    if palette is None:
        shared = model_palette(candidates)
        return {m: shared[m] for m in names}
    if not isinstance(palette, str) and len(palette) < len(names):
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
