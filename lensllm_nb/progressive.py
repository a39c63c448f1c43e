"""Budgeted progressive selection.

Start every candidate on the smallest subsets, predict each one's full-data loss,
drop the candidates whose prediction is confidently worse than the leader's, and
double the subset for the survivors until the FLOPs budget is spent. On a benchmark
table a "fine-tune" is a lookup of the measured loss; with a live collector the same
loop decides which runs to buy.

Confidence comes from backtesting, not from a model of noise: at every round the
largest purchased size is predicted from the smaller ones, and the spread of those
log errors across candidates, grown linearly with the number of doublings still to
extrapolate, is the scale of the prediction error.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from .errors import ConfigError
from .metrics import full_data_flops, training_flops
from .select import DEFAULT_METHOD, VisibleCurves, make_selector, visible_curves

__all__ = ["ProgressiveSelector"]


class ProgressiveSelector:
    """Successive-halving style selection under a FLOPs budget.

    Parameters
    ----------
    budget : float, optional
        Training FLOPs allowed, as a fraction of fine-tuning every candidate on the
        full target set; can also be given to :meth:`fit`.
    method : str, default DEFAULT_METHOD
        Selector used to predict the full-data loss each round.
    start_points : int, default 3
        Smallest sizes every candidate is fine-tuned on before the first cut
        (a law needs three points).
    confidence : float, default 0.9
        Two-sided level of the intervals; a candidate is dropped when its interval
        lies wholly above the leader's.
    min_keep : int, default 2
        Never keep fewer candidates than this while budget remains.

    Attributes
    ----------
    predictions_ : pandas.Series
        Predicted full-data loss per model (from the last round it was active).
    ranking_ : list of str
    chosen_ : str
    cost_fraction_ : float
        FLOPs spent relative to fine-tuning all candidates on the full set.
    history_ : pandas.DataFrame
        One row per round: round, size, active, spent, leader, dropped.
    """

    name = "progressive"

    def __init__(self, *, budget=None, method=DEFAULT_METHOD, start_points=3, confidence=0.9, min_keep=2):
        self.budget = budget
        self.method = method
        self.start_points = start_points
        self.confidence = confidence
        self.min_keep = min_keep

    def fit(self, table, *, target, budget=None, dataset=None):
        """Run the rounds on a tidy table whose measured losses play the fine-tunes.

        Parameters
        ----------
        table : pandas.DataFrame
            Tidy curves table with the sizes that may be bought (all < ``target``).
        target : int
            Full target-set size.
        budget : float, optional
            Overrides the ``budget`` setting.
        dataset : str, optional
            Needed when the table holds several datasets.

        Returns
        -------
        self
        """
        budget = self.budget if budget is None else budget
        if not (isinstance(budget, (int, float)) and budget > 0):
            raise ConfigError(f"`budget` must be a positive fraction of full-data FLOPs, got {budget!r}; "
                              "e.g. 0.01 for 1%.")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"`confidence` must be between 0 and 1, got {self.confidence!r}.")
        pool = visible_curves(table, max_train=int(target) - 1, target=target, dataset=dataset)
        if min(s.size for s in pool.sizes) < self.start_points:
            raise ConfigError(f"every candidate needs at least `start_points`={self.start_points} sizes below "
                              "the target.")
        rows = table if dataset is None else table[table["dataset"] == dataset]
        cost_of = _cost_lookup(rows, training_flops)
        total = full_data_flops(rows, target=target)
        selector = make_selector(self.method)

        n_bought = np.full(len(pool.models), self.start_points)
        spent = sum(cost_of(m, s) for m, sizes in zip(pool.models, pool.sizes) for s in sizes[: self.start_points])
        active = np.ones(len(pool.models), dtype=bool)
        pred = np.full(len(pool.models), np.nan)
        history = []
        z = stats.norm.ppf(0.5 + self.confidence / 2)
        for round_ in itertools.count(1):
            idx = np.flatnonzero(active)
            view = _bought(pool, idx, n_bought)
            pred[idx], _ = selector._predict(view)
            doublings = np.log2(target / np.array([s[-1] for s in view.sizes]))
            half = z * _backtest_scale(selector, view) * np.maximum(doublings, 1.0)
            worse = _confidently_worse(np.log(pred[idx]), half, self.min_keep)
            leader = idx[np.argmin(pred[idx])]
            active[idx[worse]] = False
            history.append({"round": round_, "size": int(max(s[-1] for s in view.sizes)), "active": int(idx.size),
                            "spent": spent / total, "leader": pool.models[leader],
                            "dropped": int(worse.sum())})
            survivors = np.flatnonzero(active & (n_bought < np.array([s.size for s in pool.sizes])))
            if survivors.size == 0:
                break
            extra = sum(cost_of(pool.models[i], pool.sizes[i][n_bought[i]]) for i in survivors)
            if (spent + extra) / total > budget:
                break
            spent += extra
            n_bought[survivors] += 1
            active[:] = False
            active[survivors] = True
        self.predictions_ = pd.Series(pred, index=pd.Index(pool.models, name="model"), name="predicted")
        self.ranking_ = list(self.predictions_.sort_values(kind="stable").index)
        self.chosen_ = self.ranking_[0]
        self.cost_fraction_ = spent / total
        self.history_ = pd.DataFrame(history)
        self.budget_ = float(budget)
        return self


def _bought(pool, idx, n_bought):
    """The curves of candidates ``idx`` cut to the sizes bought so far."""
    return VisibleCurves(models=[pool.models[i] for i in idx],
                         sizes=[pool.sizes[i][: n_bought[i]] for i in idx],
                         losses=[pool.losses[i][: n_bought[i]] for i in idx],
                         zero_shot=pool.zero_shot[idx], params=pool.params[idx], target=pool.target)


def _confidently_worse(log_pred, half, min_keep):
    """Candidates whose interval lies wholly above the leader's; the best ``min_keep`` stay."""
    best = np.argmin(log_pred)
    worse = log_pred - half > log_pred[best] + half[best]
    worse[np.argsort(log_pred, kind="stable")[:min_keep]] = False
    return worse


def _backtest_scale(selector, view):
    """Robust spread of the log error when the largest size is predicted from the rest."""
    if min(s.size for s in view.sizes) <= 3:
        # Too few points to hold one out: assume a 5% error per doubling, the
        # order of the published extrapolation errors at small budgets.
        return 0.05
    held = VisibleCurves(models=view.models, sizes=[s[:-1] for s in view.sizes],
                         losses=[l[:-1] for l in view.losses], zero_shot=view.zero_shot,
                         params=view.params, target=int(view.sizes[0][-1]))
    back, _ = selector._predict(held)
    err = np.log(back) - np.log([l[-1] for l in view.losses])
    # Median absolute deviation is not thrown off by one odd curve.
    return max(1.4826 * float(np.median(np.abs(err - np.median(err)))), 1e-3)


def _cost_lookup(rows, training_flops):
    flops = training_flops(rows)
    table = pd.Series(flops.to_numpy(), index=pd.MultiIndex.from_arrays([rows["model"], rows["n_train"]]))
    table = table[~table.index.duplicated()]
    return lambda model, size: float(table[(model, int(size))])
