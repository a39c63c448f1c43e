"""Do the engine's intervals and ``p_best`` mean what they say? Coverage, interval score, reliability.

Runs the prediction engine at every budget of the benchmark protocol and keeps, per
candidate, the interval at several levels, ``p_best`` and the true loss at the target;
from that tidy frame it reports coverage per level and budget, the interval score and
the reliability of ``p_best``.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.calibration``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .predict import DEFAULT_METHOD, predict_candidates
from .protocol import DEFAULT_RATIOS

__all__ = ["DEFAULT_LEVELS", "RELIABILITY_EDGES", "calibration_predictions", "coverage", "interval_score",
           "reliability"]

DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95)
# Bin edges of p_best for the reliability plot: among 30 candidates most p_best are small.
RELIABILITY_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0)


def calibration_predictions(table, *, dataset=None, target=None, ratios=DEFAULT_RATIOS,
                            levels=DEFAULT_LEVELS, method=DEFAULT_METHOD) -> pd.DataFrame:
    """The engine's predictions at every protocol budget, with intervals at ``levels`` and the truth.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table; every candidate needs a measured loss at ``target``.
    dataset : str, optional
        Needed when the table holds several datasets.
    target : int, optional
        Default the largest size in the table.
    ratios : sequence of int
        Budgets ``target // r`` of the protocol.
    levels : sequence of float
        Interval levels, each between 0 and 1.
    method : str
        Method with a predictive distribution.

    Returns
    -------
    pandas.DataFrame
        One row per (ratio, model, level): dataset, method, ratio, max_train,
        model, level, predicted, low, high, p_best, true, is_best.
    """
    levels = _check_levels(levels)
    frames = []
    for ratio in ratios:
        if not (isinstance(ratio, (int, np.integer)) and ratio > 1):
            raise ConfigError(f"`ratios` must be integers > 1, got {ratio!r}; e.g. [8, 16, 32].")
        res = predict_candidates(table, max_train=int(_target(table, dataset, target) // ratio),
                                 target=target, method=method, dataset=dataset)
        truth = _truth(table, res)
        base = res.frame.assign(dataset=res.dataset, method=res.method, ratio=int(ratio),
                                max_train=res.max_train, true=truth,
                                is_best=truth == truth.min())
        for level in levels:
            bounds = res.interval(level)
            frames.append(base.assign(level=level, low=bounds["low"].to_numpy(), high=bounds["high"].to_numpy()))
    columns = ["dataset", "method", "ratio", "max_train", "model", "level", "predicted", "low", "high",
               "p_best", "true", "is_best"]
    return pd.concat(frames, ignore_index=True)[columns]


def coverage(predictions) -> pd.DataFrame:
    """Share of true losses inside the interval, per (dataset, level, ratio) and pooled over ratios.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The result of :func:`calibration_predictions`.

    Returns
    -------
    pandas.DataFrame
        dataset, level, ratio (``"all"`` for the pooled row), coverage, n,
        mean_interval_score (α = 1 − level, log loss).
    """
    frame = predictions.assign(
        inside=(predictions["low"] <= predictions["true"]) & (predictions["true"] <= predictions["high"]),
        score=interval_score(predictions["low"], predictions["high"], predictions["true"],
                             alpha=1 - predictions["level"].to_numpy(float)))
    keys = ["dataset", "level"]
    per = frame.groupby(keys + ["ratio"]).agg(coverage=("inside", "mean"), n=("inside", "size"),
                                             mean_interval_score=("score", "mean")).reset_index()
    pooled = frame.groupby(keys).agg(coverage=("inside", "mean"), n=("inside", "size"),
                                     mean_interval_score=("score", "mean")).reset_index().assign(ratio="all")
    per["ratio"] = per["ratio"].astype(object)
    return pd.concat([per, pooled[per.columns]], ignore_index=True)


def interval_score(low, high, true, *, alpha) -> np.ndarray:
    """Interval score in log loss: ``(log high − log low) + 2/α · miss``, lower is better.

    Parameters
    ----------
    low, high, true : array-like
        Interval bounds and true losses (positive).
    alpha : float or array-like
        1 − the interval's level (0.1 for a 90% interval).
    """
    low, high, true = (np.log(np.asarray(v, float)) for v in (low, high, true))
    alpha = np.asarray(alpha, float)
    if np.any((alpha <= 0) | (alpha >= 1)):
        raise ConfigError(f"`alpha` must be between 0 and 1, got {alpha!r}; 0.1 scores a 90% interval.")
    below, above = np.maximum(low - true, 0.0), np.maximum(true - high, 0.0)
    return (high - low) + 2.0 / alpha * (below + above)


def reliability(predictions, *, bins=RELIABILITY_EDGES) -> pd.DataFrame:
    """``p_best`` in bins against how often the candidate was the best.

    Parameters
    ----------
    predictions : pandas.DataFrame
        :func:`calibration_predictions` (one level is used; p_best does not depend on it).
    bins : int or sequence of float, default :data:`RELIABILITY_EDGES`
        Number of equal-width bins, or increasing bin edges from 0 to 1. With
        30 candidates most ``p_best`` are small, so the default edges are
        finer there.

    Returns
    -------
    pandas.DataFrame
        dataset, bin (its interval), mean_p_best, observed (share that was
        best), n; empty bins are left out.
    """
    edges = _check_edges(bins)
    one = predictions[predictions["level"] == predictions["level"].iloc[0]]
    binned = one.assign(bin=pd.cut(one["p_best"], edges, include_lowest=True))
    out = binned.groupby(["dataset", "bin"], observed=True).agg(
        mean_p_best=("p_best", "mean"), observed=("is_best", "mean"), n=("p_best", "size")).reset_index()
    out["bin"] = out["bin"].astype(str)
    return out


def _check_edges(bins) -> np.ndarray:
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool) and bins >= 2:
        return np.linspace(0.0, 1.0, int(bins) + 1)
    edges = np.asarray(bins, float) if not isinstance(bins, (int, np.integer, bool)) else np.array([])
    if edges.ndim != 1 or edges.size < 3 or edges[0] != 0 or edges[-1] != 1 or np.any(np.diff(edges) <= 0):
        raise ConfigError(f"`bins` must be an integer ≥ 2 or increasing edges from 0 to 1, got {bins!r}; "
                          "e.g. 5 or [0, 0.1, 0.5, 1].")
    return edges


def _target(table, dataset, target) -> int:
    if target is not None:
        return int(target)
    rows = table if dataset is None else table[table["dataset"] == dataset]
    return int(rows["n_train"].max())


def _truth(table, res) -> np.ndarray:
    rows = table[(table["dataset"] == res.dataset) & (table["n_train"] == res.target)]
    truth = rows.groupby("model")["test_loss"].mean().reindex(res.frame["model"])
    if truth.isna().any():
        missing = list(truth.index[truth.isna()][:3])
        raise ConfigError(f"`target` = {res.target:,}: no measured loss for {missing}; calibration needs "
                          "the true loss of every candidate at the target.")
    return truth.to_numpy(float)


def _check_levels(levels) -> list:
    levels = [levels] if isinstance(levels, (int, float)) else list(levels)
    bad = [v for v in levels if not (isinstance(v, (int, float, np.floating)) and 0 < v < 1)]
    if bad or not levels:
        raise ConfigError(f"`levels` must be numbers between 0 and 1, got {bad or levels}; e.g. [0.8, 0.9].")
    return [float(v) for v in levels]
