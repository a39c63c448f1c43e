"""``BudgetedSelector``: what progressive selection and successive halving share.

Both buy fine-tunes under a FLOPs budget, a fraction of fine-tuning every candidate
on the full target set; on a benchmark table a "fine-tune" is a lookup of the
measured loss. This base class holds the table-level ``fit``, the budget check
and the FLOPs lookup; a subclass implements ``fit_pool``.
"""

from __future__ import annotations

import pandas as pd

from ..errors import ConfigError
from .base import BaseEstimator
from .visible import visible_curves
from .metrics import training_flops

__all__ = ["BudgetedSelector", "cost_lookup"]


class BudgetedSelector(BaseEstimator):
    """A selector that spends a FLOPs budget on fine-tunes (``fit_pool`` in subclasses)."""

    _fitted_attribute = "chosen_"
    _fit_call = "fit(table, target=..., budget=...)"

    def fit(self, table, *, target, budget=None, dataset=None):
        """Run the selection on a tidy table whose measured losses play the fine-tunes.

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
        pool = visible_curves(table, max_train=int(target) - 1, target=target, dataset=dataset)
        rows = table if dataset is None else table[table["dataset"] == dataset]
        return self.fit_pool(pool, rows, target=target, budget=budget)

    def fit_pool(self, pool, rows, *, target, budget=None):
        """:meth:`fit` on curves already cut by :func:`~lensllm_nb.analysis.visible.visible_curves`; each subclass says how.

        Parameters
        ----------
        pool : VisibleCurves
            Every size that may be bought.
        rows : pandas.DataFrame
            The tidy rows of those curves (for their FLOPs).
        target, budget
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        raise NotImplementedError(f"{type(self).__name__} must implement fit_pool")

    def _budget(self, budget):
        """The budget to spend: `budget`, else the setting; checked."""
        budget = self.budget if budget is None else budget
        if not (isinstance(budget, (int, float)) and budget > 0):
            raise ConfigError(f"`budget` must be a positive fraction of full-data FLOPs, got {budget!r}; "
                              "e.g. 0.01 for 1%.")
        return budget


def cost_lookup(rows):
    """``cost_of(model, size)``: the training FLOPs of one stored run of `rows`."""
    flops = training_flops(rows)
    table = pd.Series(flops.to_numpy(), index=pd.MultiIndex.from_arrays([rows["model"], rows["n_train"]]))
    table = table[~table.index.duplicated()]
    return lambda model, size: float(table[(model, int(size))])
