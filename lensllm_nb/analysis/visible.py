"""What a selector may look at: the visible part of every candidate's curve.

:class:`VisibleCurves` holds each candidate's sizes and seed-averaged losses up to the
largest visible size, with its zero-shot loss, parameter count and (when the table
carries them) optimizer steps, learning rate and NTK features. Every selector and the
benchmark protocol cut a validated curves table to this once per budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError
from .curves import validate_curves

__all__ = ["VisibleCurves", "visible_curves", "cut_visible", "cut_key", "visible_from_valid"]


@dataclass(frozen=True)
class VisibleCurves:
    """What a selector may look at: the visible part of every candidate's curve.

    Attributes
    ----------
    models : list of str
    sizes : list of ndarray
        Positive visible sizes of each model, increasing.
    losses : list of ndarray
        Seed-averaged test losses at those sizes.
    zero_shot : ndarray
        Zero-shot loss per model (NaN when not measured).
    params : ndarray
        Parameter count per model (NaN when unknown).
    target : int
        Size whose loss is predicted.
    steps : list of ndarray or None
        Optimizer steps of the runs at ``sizes`` (seed mean), when the table has a
        complete ``steps`` column.
    lr : ndarray or None
        Learning rate of each model's runs, when the table has an ``lr`` column.
    ntk : dict or None
        Model -> NTK features, when the table carries them for every model
        (``table.attrs["ntk"][dataset]``, as :func:`lensllm_nb.analysis.published_curves.load` sets).
    """

    models: list
    sizes: list
    losses: list
    zero_shot: np.ndarray
    params: np.ndarray
    target: int
    steps: list | None = None
    lr: np.ndarray | None = None
    ntk: dict | None = None


def visible_curves(table, *, max_train, target, dataset=None) -> VisibleCurves:
    """Cut a tidy table down to what a selector may see.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table (validated here).
    max_train : int
        Largest visible training size.
    target : int
        Size whose loss is predicted.
    dataset : str, optional
        Needed when the table holds several datasets.
    """
    return visible_from_valid(validate_curves(table, source=table.attrs.get("source", "<table>")),
                              max_train=max_train, target=target, dataset=dataset)


def cut_visible(visible: VisibleCurves, max_size, *, target) -> VisibleCurves:
    """``visible`` with every per-point array (sizes, losses, steps) cut to sizes ≤ ``max_size``, predicting ``target``."""
    keep = [sizes <= max_size for sizes in visible.sizes]
    steps = None if visible.steps is None else [t[k] for t, k in zip(visible.steps, keep)]
    return replace(visible, sizes=[s[k] for s, k in zip(visible.sizes, keep)],
                   losses=[l[k] for l, k in zip(visible.losses, keep)], steps=steps, target=int(target))


def cut_key(visible: VisibleCurves) -> tuple:
    """What tells apart the cuts of one set of curves (:func:`cut_visible`): the target and each candidate's point count."""
    return int(visible.target), tuple(len(sizes) for sizes in visible.sizes)


def visible_from_valid(df, *, max_train, target, dataset=None) -> VisibleCurves:
    """:func:`visible_curves` on a table that :func:`~lensllm_nb.analysis.curves.validate_curves` already checked."""
    datasets = sorted(df["dataset"].unique())
    if dataset is None and len(datasets) > 1:
        raise ConfigError(f"the table holds several datasets {datasets}; pass `dataset=` to choose one.")
    if dataset is not None:
        if dataset not in datasets:
            raise ConfigError(f"`dataset` {dataset!r} is not in the table; choose from {datasets}.")
        df = df[df["dataset"] == dataset]
    for name, value in (("max_train", max_train), ("target", target)):
        if not (isinstance(value, (int, np.integer)) and value > 0):
            raise ConfigError(f"`{name}` must be a positive integer, got {value!r}.")
    if max_train >= target:
        raise ConfigError(f"`max_train` ({max_train}) must be smaller than `target` ({target}); "
                          "selection predicts beyond what was measured.")
    mean = df.groupby(["model", "n_train"], sort=True)["test_loss"].mean()
    models = sorted(df["model"].unique())
    sizes, losses = [], []
    for model in models:
        curve = mean.loc[model]
        curve = curve[(curve.index > 0) & (curve.index <= max_train)]
        sizes.append(curve.index.to_numpy(dtype=float))
        losses.append(curve.to_numpy(dtype=float))
    zero = np.array([mean.get((m, 0), np.nan) for m in models], dtype=float)
    if "params" in df.columns:
        params = df.groupby("model")["params"].first().reindex(models).to_numpy(dtype=float)
    else:
        params = np.full(len(models), np.nan)
    dataset = datasets[0] if dataset is None else dataset
    return VisibleCurves(models=models, sizes=sizes, losses=losses, zero_shot=zero, params=params,
                         target=int(target), steps=_visible_steps(df, models, sizes),
                         lr=_model_values(df, models, "lr"), ntk=_table_ntk(df, dataset, models))


def _visible_steps(df, models, sizes):
    """Seed-mean optimizer steps at each visible size, or None when any is missing."""
    if "steps" not in df.columns or df["steps"].isna().any():
        return None
    mean = df.groupby(["model", "n_train"], sort=True)["steps"].mean()
    return [mean.loc[model].reindex(s.astype(int)).to_numpy(dtype=float) for model, s in zip(models, sizes)]


def _model_values(df, models, column):
    if column not in df.columns or df[column].isna().any():
        return None
    return df.groupby("model")[column].first().reindex(models).to_numpy(dtype=float)


def _table_ntk(df, dataset, models):
    """NTK features the table carries for every model of `dataset` (``attrs["ntk"]``), else None."""
    found = (df.attrs.get("ntk") or {}).get(dataset) or {}
    return {m: found[m] for m in models} if models and set(models) <= set(found) else None
