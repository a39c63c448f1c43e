"""Shared pieces of the plot modules: axis labels and style, curve points, saving figures.

``save_figure`` is public (re-exported by :mod:`lensllm_nb.workflow.plots`); the
rest are private helpers of the plot families.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from ...errors import ConfigError
from ...utils.safe_output import open_inside
from ...utils.validation import check_columns

__all__ = ["save_figure"]

_X_LABEL = "training examples (log)"


_Y_LABEL = "test loss (log)"


_STYLE = "whitegrid"


_Y_MARGIN = 1.04


_SAVE_SUFFIXES = (".png", ".svg", ".pdf")


def _curve_points(table, models):
    """Return the seed-averaged points of the selected models and their order."""
    check_columns(table, "table", ("model", "n_train", "test_loss"))
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


def _draw_limits(ax, max_train, target):
    """Mark the visible-size limit and the extrapolation target."""
    if max_train is not None and max_train > 0:
        ax.axvline(max_train, color="0.35", linestyle="--", linewidth=1.0, zorder=0)
    if target is not None:
        ax.axvline(target, color="0.35", linestyle="-.", linewidth=1.0, zorder=0)


class _PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (0.6, 2, 30) on the ticks LogFormatter labels."""

    def __call__(self, x, pos=None):
        return f"{x:.3g}" if super().__call__(x, pos) else ""


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


def _one_dataset(data, draw, ax, size, *, arg, name, style=_STYLE):
    """Call ``draw(ax, data, dataset, True)`` for the one dataset of `data`; return the Axes.

    An axes-level function draws one dataset: several are refused with a pointer to
    its figure-level twin ``<name>_grid``, which draws one panel per dataset.
    """
    datasets = _datasets(data, arg)
    if len(datasets) > 1:
        shown = ", ".join(map(str, datasets[:5])) + (", ..." if len(datasets) > 5 else "")
        given = "`ax` was given but " if ax is not None else ""
        raise ConfigError(
            f"{given}`{arg}` holds {len(datasets)} datasets ({shown}); {name} draws one dataset on one "
            f"Axes: filter `{arg}` to one dataset ({arg}[{arg}['dataset'] == {datasets[0]!r}]) or call "
            f"{name}_grid({arg}) for one panel per dataset."
        )
    ax = _new_axes(ax, figsize=size, style=style)
    draw(ax, data, datasets[0], True)
    return ax


def _dataset_grid(data, draw, size, *, arg, style=_STYLE):
    """Call ``draw(ax, frame, dataset, last)`` once per dataset, one panel each; return the FacetGrid.

    A grid also for one dataset: a figure-level function returns its grid whatever the data.
    """
    datasets = _datasets(data, arg)
    with sns.axes_style(style):
        grid = sns.FacetGrid(
            data, col="dataset", col_order=datasets, height=size[1],
            aspect=size[0] / size[1], sharex=False, sharey=False,
        )
    for i, (dataset, panel) in enumerate(grid.axes_dict.items()):
        draw(panel, data[data["dataset"] == dataset], dataset, i == len(datasets) - 1)
    grid.figure.tight_layout()
    return grid


def _datasets(data, arg) -> list:
    """The datasets of `data` in order of appearance; refused when there is none."""
    datasets = list(pd.unique(data["dataset"]))
    if not datasets:
        raise ConfigError(f"`{arg}` has no rows; pass a table with at least one dataset.")
    return datasets
