"""The interval multiplier a user's own curves ask for, blended with the corpus prior (study C6).

The engine's multiplier :data:`~lensllm_nb.analysis.predict.SCALE` was calibrated on other
tasks; a user's task is always a new one. Its own evidence: refit the method on the sizes up
to an origin inside the visible ones, forecast the largest visible size, and compare the
error with the reference spread there. Where these backtests ask for more than the prior,
the engine takes the geometric mean of the two; where they ask for less, or no origin
exists, the prior (docs/SELECTION_STUDY.md, C6; figures in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

from .visible import cut_visible
from .pair_backtest import backtest_origins

__all__ = ["backtest_multiplier", "backtest_ratios", "blended_multiplier"]

# A reference spread below this (0.1% of the loss) is read as this.
_MIN_SPREAD = 1e-3


def backtest_multiplier(visible, center_and_spread, *, median_abs) -> float:
    """The multiplier of the spread that the user's own backtests call for (0 if no origin exists).

    Parameters
    ----------
    visible : VisibleCurves
        Every candidate must share the largest visible size s_k (else 0 is returned).
    center_and_spread : callable
        ``center_and_spread(cut) -> (log centre, spread)`` for curves cut at an origin with
        target s_k.
    median_abs : float
        Median of |T| for the engine's predictive distribution (its scale unit).

    Returns
    -------
    float
        median over candidates and origins of |log L(s_k) − centre| / spread, over ``median_abs``.
    """
    ratios = backtest_ratios(visible, center_and_spread)
    return float(np.median(np.concatenate(ratios)) / median_abs) if ratios else 0.0


def backtest_ratios(visible, center_and_spread) -> list:
    """|log L(s_k) − backtest centre| / spread per candidate, one array per origin (none if sizes differ)."""
    s_k = visible.sizes[0][-1]
    if any(sizes[-1] != s_k for sizes in visible.sizes):
        return []
    observed = np.log([losses[-1] for losses in visible.losses])
    ratios = []
    for origin in backtest_origins(visible, visible.sizes[0]):
        center, spread = center_and_spread(cut_visible(visible, origin, target=s_k))
        ratios.append(np.abs(observed - center) / np.maximum(spread, _MIN_SPREAD))
    return ratios


def blended_multiplier(prior: float, own: float) -> float:
    """√(prior · max(prior, own)): the prior, raised half-way in log where the user's backtests ask for more."""
    return float(np.sqrt(prior * max(prior, own)))

