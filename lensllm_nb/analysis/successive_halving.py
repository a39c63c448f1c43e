"""Successive halving: the baseline a practitioner would run instead of progressive selection.

Every candidate is fine-tuned on the starting size; the best 1/η by measured loss
are kept, the size is doubled, and so on until one candidate is left (η = 2 or 4,
as in Optuna's ``SuccessiveHalvingPruner``). Under a FLOPs budget the starting
size is the largest measured size whose whole ladder fits it (when none fits, the
ladder starts at the smallest size and stops before the first rung the budget
cannot pay). Nothing is extrapolated: each rung compares measured losses. On a benchmark table a
"fine-tune" is a lookup of the measured loss, as in :mod:`lensllm_nb.analysis.progressive`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .budgeted import BudgetedSelector, cost_lookup
from .metrics import full_data_flops

__all__ = ["SuccessiveHalvingSelector", "budget_ladder", "halving_ladder", "ladder_ranking"]


class SuccessiveHalvingSelector(BudgetedSelector):
    """Successive halving under a FLOPs budget.

    Parameters
    ----------
    eta : int, default 2
        Keep the best ``ceil(n / eta)`` candidates of each rung.
    budget : float, optional
        Training FLOPs allowed, as a fraction of fine-tuning every candidate on the
        full target set; can also be given to :meth:`fit`.

    Attributes
    ----------
    chosen_ : str
        The last candidate standing (the best of the last rung with two or more).
    ranking_ : list of str
        By the rung reached (later first), then by the loss measured there.
    predictions_ : pandas.Series
        The loss each candidate had at the last rung it ran (a measured loss,
        not a prediction at the target: it ranks, it does not extrapolate).
    ladder_ : pandas.DataFrame
        One row per rung: rung, size, candidates, kept.
    start_size_, cost_fraction_ : int, float
    """

    name = "successive_halving"

    def __init__(self, *, eta=2, budget=None):
        self.eta = eta
        self.budget = budget

    def fit_pool(self, pool, rows, *, target, budget=None):
        """Spend the budget on `pool` (:meth:`BudgetedSelector.fit_pool` has the parameters); return self."""
        budget = self._budget(budget)
        if not (isinstance(self.eta, (int, np.integer)) and self.eta >= 2):
            raise ConfigError(f"`eta` must be an integer >= 2, got {self.eta!r}; Optuna uses 2 to 4.")
        cost_of = cost_lookup(rows)
        total = full_data_flops(rows, target=target)
        start, ladder, spent = budget_ladder(pool, self.eta, cost_of, budget=budget, total=total)
        if not ladder:
            raise ConfigError(_no_ladder_reason(pool, budget))
        self.start_size_ = int(start)
        self._store(pool, ladder)
        self.cost_fraction_ = spent / total
        self.budget_ = float(budget)
        return self

    def _store(self, pool, ladder):
        self.ranking_, loss = ladder_ranking(pool, ladder)
        self.chosen_ = self.ranking_[0]
        self.predictions_ = pd.Series(loss, index=pd.Index(pool.models, name="model"), name="predicted")
        self.ladder_ = pd.DataFrame([{"rung": r, "size": int(size), "candidates": len(members), "kept": len(kept)}
                                     for r, (size, members, kept) in enumerate(ladder)])


def budget_ladder(pool, eta, cost_of, *, budget, total, spent=0.0):
    """The ladder successive halving runs under a budget, and where it starts.

    From the largest measured size whose whole ladder fits, (``spent`` + its FLOPs) /
    ``total`` ≤ ``budget``; when none fits, from the smallest size, stopping before the
    first rung the budget cannot pay.

    Parameters
    ----------
    pool : VisibleCurves
    eta : int
    cost_of : callable
        ``cost_of(model, size)`` in FLOPs.
    budget : float
        Fraction of ``total`` that may be spent in all.
    total : float
        FLOPs of fine-tuning every candidate on the full set.
    spent : float
        FLOPs already spent elsewhere out of the same budget.

    Returns
    -------
    (start, ladder, cost)
        The first rung's size, the rungs (as :func:`halving_ladder`; empty when not
        even one fits) and their FLOPs.
    """
    starts = sorted({float(s) for sizes in pool.sizes for s in sizes})
    fitting = None
    for start in starts:
        ladder, cost = halving_ladder(pool, start, eta, cost_of)
        if ladder is not None and (spent + cost) / total <= budget:
            fitting = (start, ladder, cost)
    if fitting is None:
        ladder, cost = halving_ladder(pool, starts[0], eta, cost_of, limit=budget * total - spent)
        fitting = (starts[0], ladder, cost)
    return fitting


def halving_ladder(pool, start, eta, cost_of, *, limit=float("inf")):
    """The rungs of successive halving from ``start`` and their FLOPs.

    Parameters
    ----------
    pool : VisibleCurves
    start : float
        Size of the first rung.
    eta : int
    cost_of : callable
        ``cost_of(model, size)`` in FLOPs.
    limit : float
        FLOPs the ladder may spend: it stops before the first rung that would exceed them.

    Returns
    -------
    (ladder, spent)
        ``ladder`` is a list of (size, members, kept) with member indices, or
        None when the start size is not measured for every candidate; ``spent``
        the FLOPs of every rung. The ladder ends when one candidate is left or no
        doubled size is measured below the target (the last rung's best is the pick).
    """
    members = list(range(len(pool.models)))
    ladder, spent, size = [], 0.0, float(start)
    while len(members) >= 2 and size is not None:
        if not all(np.any(pool.sizes[i] == size) for i in members):
            return None, float("inf")
        rung_cost = sum(cost_of(pool.models[i], size) for i in members)
        if spent + rung_cost > limit:
            break
        spent += rung_cost
        ranked = sorted(members, key=lambda i: (_loss_at(pool, i, size), pool.models[i]))
        kept = ranked[: int(np.ceil(len(members) / eta))]
        ladder.append((size, members, kept))
        members, size = kept, _doubled(pool, kept, size)
    return ladder, spent


def ladder_ranking(pool, ladder):
    """The candidates by the rung they reached (later first), then by the loss measured there, and that loss.

    Parameters
    ----------
    pool : VisibleCurves
    ladder : list
        Rungs from :func:`halving_ladder`, every candidate in the first.

    Returns
    -------
    (ranking, loss)
        Model names, the last one standing first; each candidate's loss at its last rung, in pool order.
    """
    reached, loss = {}, {}
    for rung, (size, members, _) in enumerate(ladder):
        for i in members:
            reached[i], loss[i] = rung, _loss_at(pool, i, size)
    order = sorted(reached, key=lambda i: (-reached[i], loss[i], pool.models[i]))
    return [pool.models[i] for i in order], [loss[i] for i in range(len(pool.models))]


def _no_ladder_reason(pool, budget) -> str:
    """Why no rung could run: the candidates share no measured size, or the budget pays not even the first."""
    if not set.intersection(*(set(sizes.tolist()) for sizes in pool.sizes)):
        return ("successive halving compares candidates at a size they were all measured at, and these "
                "candidates share none below the target (each has its own size grid); measure them on "
                "common sizes to run it.")
    return (f"successive halving: no ladder fits `budget` {budget:.3g} of full-data FLOPs "
            "(not even every candidate on the smallest size); raise the budget.")


def _doubled(pool, members, size):
    """The measured size that doubles ``size`` (the smallest ≥ 1.9 × it: ladders such as LCDB's
    16·√2^k are rounded), or None when the members have none below the target (the ladder ends)."""
    common = set.intersection(*(set(pool.sizes[i].tolist()) for i in members))
    larger = sorted(s for s in common if s >= 1.9 * size)
    return float(larger[0]) if larger else None


def _loss_at(pool, i, size):
    return float(pool.losses[i][pool.sizes[i] == size][0])
