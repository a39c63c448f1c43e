"""Budgeted progressive selection.

Start every candidate on the smallest subsets, predict each one's full-data loss,
drop the candidates that the prediction engine (:mod:`lensllm_nb.analysis.predict`) says are
unlikely to be best, and buy the next size for the survivors until the FLOPs budget
is spent; the pick is then the default's (``backtested_pick``) on the last candidates'
bought curves: the observed leader unless a backtest backs the extrapolated one. Where,
on the start points, the leader's gaps persisted (study G3), the rest of the budget goes
to successive halving by measured loss instead. On a benchmark table a "fine-tune" is a
lookup of the measured loss; with a live collector the same loop decides which runs to buy.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.progressive``.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..utils.validation import check_choice
from .budgeted import BudgetedSelector, cost_lookup
from .visible import VisibleCurves
from .metrics import full_data_flops
from .curve_envelope import log_envelope
from .pair_backtest import gap_persistence
from .predict import log_predictive, p_best
from .selection import BacktestedPickSelector
from .successive_halving import budget_ladder, ladder_ranking

__all__ = ["ProgressiveSelector", "LADDERS", "REMAINDERS", "PERSISTING_GAPS"]

# Which pool sizes progressive buys (study L1); what a round does when the budget
# cannot pay every survivor's next size (study G2); what follows start points on which
# the leader's gaps persisted (study G3).
LADDERS = ("doubling", "every")
REMAINDERS = ("stop", "contenders")
PERSISTING_GAPS = ("halve", "rounds")


class ProgressiveSelector(BudgetedSelector):
    """Successive-halving style selection under a FLOPs budget.

    Parameters
    ----------
    budget : float, optional
        Training FLOPs allowed, as a fraction of fine-tuning every candidate on the
        full target set; can also be given to :meth:`fit`.
    method : str, default "curvature_drift"
        Selector used to predict the full-data loss each round: the one whose
        predictions (and the engine's distribution around them) the default
        ``backtested_pick`` shows; its pick rule is not needed here, since each
        round drops by ``p_best``, and skipping its backtest keeps rounds cheap.
    start_points : int, default 3
        Smallest sizes every candidate is fine-tuned on before the first cut
        (a law needs three points).
    risk : float, default 0.01
        Largest summed ``p_best`` of the candidates dropped in one round.
    drop_from : int, default 5
        No candidate is dropped before every active one has this many sizes: the
        engine's intervals are calibrated at the benchmark protocol's budgets,
        whose smallest leaves 5 sizes; with 3 or 4 points every extrapolator
        draws the same line and their agreement says nothing.
    min_keep : int, default 2
        Never keep fewer candidates than this while budget remains.
    ladder : {"doubling", "every"}, default "doubling"
        Which pool sizes are bought: from the smallest, each next one at least twice
        the last bought (as successive halving doubles its rungs; on a pool spaced by
        √2 every other size), or every size in turn (study L1, docs/SELECTION_STUDY.md).
    remainder : {"stop", "contenders"}, default "stop"
        When the budget cannot pay the next size of every survivor: stop, or buy it
        for as many survivors as it pays, highest ``p_best`` first, while at least
        ``min_keep`` can be paid (study G2).
    persisting_gaps : {"halve", "rounds"}, default "halve"
        Where, on the start points, "the gap stays" forecast most of the leader's
        gaps at the largest start size more closely than straight lines did
        (:func:`~lensllm_nb.analysis.pair_backtest.gap_persistence`): spend the rest
        of the budget as successive halving (η = 2) does, the start runs free, and
        pick the last one standing; or run the rounds anyway (study G3).

    Attributes
    ----------
    predictions_ : pandas.Series
        Predicted full-data loss per model (from the last round it was active).
    ranking_ : list of str
    chosen_ : str
        ``backtested_pick``'s pick among the candidates of the last round.
    chosen_reason_ : str
    cost_fraction_ : float
        FLOPs spent relative to fine-tuning all candidates on the full set.
    history_ : pandas.DataFrame
        One row per round (or halving rung): round, size, active, spent, leader, dropped.
    p_best_history_ : pandas.DataFrame
        One row per (round, active model): p_best, predicted (no rows after halving).
    halved_ : bool
        Whether the budget after the start points went to successive halving.
    """

    name = "progressive"

    def __init__(self, *, budget=None, method="curvature_drift", start_points=3, risk=0.01, drop_from=5,
                 min_keep=2, ladder="doubling", remainder="stop", persisting_gaps="halve"):
        self.budget = budget
        self.method = method
        self.start_points = start_points
        self.risk = risk
        self.drop_from = drop_from
        self.min_keep = min_keep
        self.ladder = ladder
        self.remainder = remainder
        self.persisting_gaps = persisting_gaps

    def fit_pool(self, pool, rows, *, target, budget=None):
        """Spend the budget on `pool` (:meth:`BudgetedSelector.fit_pool` has the parameters); return self."""
        budget = self._budget(budget)
        self._check_settings()
        full = pool  # successive halving, where it takes over (study G3), climbs every measured size
        if self.ladder == "doubling":
            pool = _doubling_ladder(pool)
        if min(s.size for s in pool.sizes) < self.start_points:
            raise ConfigError(f"every candidate needs at least `start_points`={self.start_points} sizes below "
                              f"the target (`ladder`={self.ladder!r} buys "
                              f"{'sizes at least doubling' if self.ladder == 'doubling' else 'every size'}); "
                              "add smaller sizes or pass ladder='every'.")
        cost_of = cost_lookup(rows)
        total = full_data_flops(rows, target=target)
        n_bought = np.full(len(pool.models), self.start_points)
        spent = sum(cost_of(m, s) for m, sizes in zip(pool.models, pool.sizes) for s in sizes[: self.start_points])
        self.budget_, self.halved_ = float(budget), False
        if self.persisting_gaps == "halve":
            start = _bought(pool, np.arange(len(pool.models)), n_bought)
            halve, why = self._halving_gate(start)
            if halve and self._halve(full, start, (cost_of, total, spent, budget), why):
                return self
        active = np.ones(len(pool.models), dtype=bool)
        pred = np.full(len(pool.models), np.nan)
        history, p_history = [], []
        for round_ in itertools.count(1):
            idx = np.flatnonzero(active)
            view = _bought(pool, idx, n_bought)
            center, scale = log_predictive(view, method=self.method)
            floor, ceiling = log_envelope(view)
            pred[idx] = np.exp(np.clip(center, floor, ceiling))
            pb = p_best(center, scale, floor, ceiling)
            ready = min(s.size for s in view.sizes) >= self.drop_from
            drop = _unlikely_best(pb, self.risk if ready else 0.0, self.min_keep)
            active[idx[drop]] = False
            history.append({"round": round_, "size": int(max(s[-1] for s in view.sizes)), "active": int(idx.size),
                            "spent": spent / total, "leader": pool.models[idx[np.argmax(pb)]],
                            "dropped": int(drop.sum())})
            p_history += [{"round": round_, "model": pool.models[i], "p_best": float(p), "predicted": float(pred[i])}
                          for i, p in zip(idx, pb)]
            growing = set(np.flatnonzero(active & (n_bought < np.array([s.size for s in pool.sizes]))).tolist())
            ranked = [i for i in idx[np.lexsort((pred[idx], -pb))] if i in growing]  # highest p_best first
            survivors, extra = self._paid(ranked, [cost_of(pool.models[i], pool.sizes[i][n_bought[i]]) for i in ranked],
                                          spent, total, budget)
            if survivors.size == 0:
                break
            spent += extra
            n_bought[survivors] += 1
            active[:] = False
            active[survivors] = True
        self.predictions_ = pd.Series(pred, index=pd.Index(pool.models, name="model"), name="predicted")
        self.chosen_, self.chosen_reason_ = _final_pick(pool, np.flatnonzero(active), n_bought)
        self.ranking_ = [self.chosen_] + [m for m in self.predictions_.sort_values(kind="stable").index
                                          if m != self.chosen_]
        self.cost_fraction_ = spent / total
        self.history_ = pd.DataFrame(history)
        self.p_best_history_ = pd.DataFrame(p_history)
        return self

    def _check_settings(self):
        if not (isinstance(self.risk, (int, float)) and 0 <= self.risk < 1):
            raise ConfigError(f"`risk` must be in [0, 1), got {self.risk!r}; e.g. 0.01.")
        for name, choices in (("ladder", LADDERS), ("remainder", REMAINDERS), ("persisting_gaps", PERSISTING_GAPS)):
            check_choice(name, getattr(self, name), choices)

    def _halving_gate(self, start):
        """(halve, why): whether persistence forecast most of the leader's gaps on the start points."""
        closer, pairs = gap_persistence(start)
        return closer > pairs / 2, (f"on the start points the leader's gaps persisted: \"the gap stays\" forecast "
                                    f"them more closely than straight lines in {closer} of {pairs} pairs")

    def _halve(self, pool, start, spending, why):
        """Spend the rest of the budget as successive halving (η = 2), the start runs free; False if no rung fits."""
        cost_of, total, spent, budget = spending
        bought = {(m, float(s)) for m, sizes in zip(start.models, start.sizes) for s in sizes}
        free = lambda m, s: 0.0 if (m, float(s)) in bought else cost_of(m, s)  # noqa: E731
        _, ladder, cost = budget_ladder(pool, 2, free, budget=budget, total=total, spent=spent)
        if not ladder:
            return False
        self.ranking_, _ = ladder_ranking(pool, ladder)
        self.chosen_, self.halved_ = self.ranking_[0], True
        self.chosen_reason_ = (f"{self.chosen_}: the last one standing of successive halving from "
                               f"{ladder[0][0]:,.0f} examples, by measured loss; {why}.")
        self.predictions_ = _predicted(pool, start, ladder, self.method)
        self.cost_fraction_ = (spent + cost) / total
        rows = []
        for rung, (size, members, kept) in enumerate(ladder, start=1):
            spent += sum(free(pool.models[i], size) for i in members)
            rows.append({"round": rung, "size": int(size), "active": len(members), "spent": spent / total,
                         "leader": pool.models[kept[0]], "dropped": len(members) - len(kept)})
        self.history_ = pd.DataFrame(rows)
        self.p_best_history_ = pd.DataFrame(columns=["round", "model", "p_best", "predicted"])
        return True

    def _paid(self, ranked, costs, spent, total, budget):
        """The survivors whose next size is bought this round and its FLOPs (none: the rounds end)."""
        if not ranked or (spent + sum(costs)) / total <= budget:
            return np.array(ranked, dtype=int), float(sum(costs))
        paid = int(np.sum((spent + np.cumsum(costs)) / total <= budget))
        if self.remainder == "stop" or paid < self.min_keep:
            return np.array([], dtype=int), 0.0
        return np.array(ranked[:paid], dtype=int), float(np.sum(costs[:paid]))


def _doubling_ladder(pool):
    """``pool`` with each candidate's sizes thinned so that each kept size is ≥ 2 × the previous kept one."""
    keep = []
    for sizes in pool.sizes:
        mask, last = np.zeros(sizes.size, dtype=bool), -np.inf
        for i, size in enumerate(sizes):
            if size >= 2 * last:
                mask[i], last = True, size
        keep.append(mask)
    steps = None if pool.steps is None else [t[m] for t, m in zip(pool.steps, keep)]
    return dataclasses.replace(pool, sizes=[s[m] for s, m in zip(pool.sizes, keep)],
                               losses=[l[m] for l, m in zip(pool.losses, keep)], steps=steps)


def _bought(pool, idx, n_bought):
    """The curves of candidates ``idx`` cut to the sizes bought so far."""
    return VisibleCurves(models=[pool.models[i] for i in idx],
                         sizes=[pool.sizes[i][: n_bought[i]] for i in idx],
                         losses=[pool.losses[i][: n_bought[i]] for i in idx],
                         zero_shot=pool.zero_shot[idx], params=pool.params[idx], target=pool.target)


def _predicted(pool, start, ladder, method):
    """The engine's predicted loss at the target of every candidate from the runs bought for it: its start
    points and the halving rungs it ran."""
    ran = [set(sizes.tolist()) for sizes in start.sizes]
    for size, members, _ in ladder:
        for i in members:
            ran[i].add(size)
    keep = [np.isin(sizes, sorted(r)) for sizes, r in zip(pool.sizes, ran)]
    view = VisibleCurves(models=list(pool.models), sizes=[s[k] for s, k in zip(pool.sizes, keep)],
                         losses=[l[k] for l, k in zip(pool.losses, keep)], zero_shot=pool.zero_shot,
                         params=pool.params, target=pool.target)
    center, _ = log_predictive(view, method=method)
    floor, ceiling = log_envelope(view)
    return pd.Series(np.exp(np.clip(center, floor, ceiling)), index=pd.Index(pool.models, name="model"),
                     name="predicted")


def _final_pick(pool, idx, n_bought):
    """The default's pick (:class:`~lensllm_nb.analysis.selection.BacktestedPickSelector`) on the last candidates' bought curves."""
    if idx.size == 1:
        return pool.models[idx[0]], f"{pool.models[idx[0]]}: the last candidate left."
    picker = BacktestedPickSelector().fit_visible(_bought(pool, idx, n_bought))
    return picker.chosen_, picker.chosen_reason_


def _unlikely_best(pb, risk, min_keep):
    """Mask of the lowest-p_best candidates whose summed p_best is ≤ ``risk``; ``min_keep`` stay."""
    order = np.argsort(pb, kind="stable")
    droppable = order[: max(pb.size - min_keep, 0)]
    cut = np.searchsorted(np.cumsum(pb[droppable]), risk, side="right")
    drop = np.zeros(pb.size, dtype=bool)
    drop[droppable[:cut]] = True
    return drop
