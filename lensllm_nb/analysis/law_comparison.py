"""The LensLLM paper's claims, measured on any curves table: fit, extrapolation, selection.

Three tables, one per claim, each with the LensLLM law in both variants
(``docs/LENSLLM_LAW.md``) side by side with the other methods:

* :func:`fit_rmse_table` — RMSE of log loss of each law fitted to every positive
  size of each curve (the paper's Table 2);
* :func:`extrapolation_table` — error of the predicted loss at the target (the
  full run) from sizes ≤ target / r;
* :func:`selection_table` — PearCorr, RelAcc and top-1 regret per dataset and r.

NTK features come from the table's ``attrs["ntk"]`` (``published_curves.load("zoo_corpus")``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .curves import validate_curves

from .visible import visible_from_valid
from ..errors import FitError
from .laws import make_law
from .metrics import cost_fraction, pearcorr, relacc, top1_regret
from .ntk_law import LensLLMStepsLaw
from .selection import DEFAULT_METHOD, LensLLMSelector, make_selector

__all__ = ["LAW_NAMES", "METHOD_NAMES", "RATIOS", "fit_rmse_table", "extrapolation_table", "selection_table"]

# Row labels of the tables: what each one is, by name.
# "t from steps" is what `lensllm` runs (zero-shot loss fitted as D = 0); "no anchor" the fit before study Z.
LAW_NAMES = ("vanilla", "rectified", "lensllm: t fitted", "lensllm: t from steps, no anchor", "lensllm: t from steps")
METHOD_NAMES = ("vanilla", "rectified", "ats", "lensllm: t fitted", "lensllm: t from steps, no anchor",
                "lensllm: t from steps", f"default ({DEFAULT_METHOD})")
RATIOS = (8, 16, 32, 64)  # the default ratios of `benchmark zoo_corpus` that leave >= 3 sizes


def _method(name):
    if name.startswith("lensllm"):
        steps = "from steps" in name
        return LensLLMSelector(variant="steps" if steps else "fitted_t", zero_shot_anchor=not name.endswith("anchor"))
    return make_selector(DEFAULT_METHOD if name.startswith("default") else name)


def fit_rmse_table(table) -> pd.DataFrame:
    """RMSE of log loss of every law fitted to all positive sizes of every curve.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table with ``steps`` (and ``lr``); NTK features in
        ``attrs["ntk"]`` for the LensLLM variants.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, model): one column per law of :data:`LAW_NAMES`
        (NaN where a law cannot be fitted or has no features).
    """
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    rows = []
    for dataset in sorted(df["dataset"].unique()):
        part = df[df["dataset"] == dataset]
        largest = int(part["n_train"].max())
        # Every size is visible: the target is only a placeholder one above the largest.
        visible = visible_from_valid(part, max_train=largest, target=largest + 1)
        for i, model in enumerate(visible.models):
            row = {"dataset": dataset, "model": model}
            for name in LAW_NAMES:
                row[name] = _fit_rmse(name, visible, i)
            rows.append(row)
    return pd.DataFrame(rows)


def _fit_rmse(name, visible, i):
    D, L = visible.sizes[i], visible.losses[i]
    features = None if visible.ntk is None else visible.ntk.get(visible.models[i])
    if "from steps" in name:
        if features is None or visible.steps is None:
            return np.nan
        lr = None if visible.lr is None else float(visible.lr[i])
        zero = None if name.endswith("anchor") or np.isnan(visible.zero_shot[i]) else float(visible.zero_shot[i])
        law = LensLLMStepsLaw(ntk=features).fit(D, L, visible.steps[i], lr=lr, zero_shot=zero)
        return float(law.rmse_log_) if law.success_ else np.nan
    law_name = "lensllm" if name.startswith("lensllm") else name
    if law_name == "lensllm" and features is None:
        return np.nan
    try:
        law = make_law(law_name, **({"ntk": features} if law_name == "lensllm" else {})).fit(D, L)
    except FitError:
        return np.nan
    return float(law.rmse_log_)


def extrapolation_table(table, ratios=RATIOS, target=None) -> pd.DataFrame:
    """Error of every method's predicted loss at `target` from sizes ≤ target / r.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, ratio, model, method): predicted, true,
        ``abs_log_error`` = |log predicted − log true| and the cost fraction of the
        visible runs, and ``chosen`` (the method's pick: the default's may not be
        its lowest prediction).
    """
    rows = []
    for dataset, ratio, visible, truth, cost in _cases(table, ratios, target):
        for name in METHOD_NAMES:
            selector = _fitted(name, visible)
            for model, p, t in zip(visible.models, selector.predictions_.to_numpy(), truth):
                rows.append({"dataset": dataset, "ratio": ratio, "model": model, "method": name,
                             "predicted": p, "true": t, "abs_log_error": abs(np.log(p) - np.log(t)),
                             "cost_fraction": cost, "chosen": model == selector.chosen_})
    return pd.DataFrame(rows)


def selection_table(table, ratios=RATIOS, target=None) -> pd.DataFrame:
    """PearCorr, RelAcc and top-1 regret of every method per dataset and ratio.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, ratio, method): pearson, relacc, regret, chosen,
        cost_fraction (the columns :func:`~lensllm_nb.workflow.plots.plot_benchmark_heatmap` reads).
    """
    preds = extrapolation_table(table, ratios, target)
    rows = []
    for (dataset, ratio, method), part in preds.groupby(["dataset", "ratio", "method"], sort=False):
        chosen = part.loc[part["chosen"], "model"].iloc[0]
        true, chosen_true = part["true"].to_numpy(), float(part.loc[part["model"] == chosen, "true"].iloc[0])
        rows.append({"dataset": dataset, "ratio": ratio, "method": method,
                     "pearson": pearcorr(part["predicted"].to_numpy(), true),
                     "relacc": relacc(chosen_true, true), "regret": top1_regret(chosen_true, true),
                     "chosen": chosen, "cost_fraction": float(part["cost_fraction"].iloc[0])})
    return pd.DataFrame(rows)


def _cases(table, ratios, target):
    """(dataset, ratio, visible curves, true losses at the target, cost fraction) per dataset and ratio."""
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    for dataset in sorted(df["dataset"].unique()):
        part = df[df["dataset"] == dataset]
        goal = int(part["n_train"].max()) if target is None else int(target)
        truth = part[part["n_train"] == goal].groupby("model")["test_loss"].mean()
        for ratio in ratios:
            rows = part[part["n_train"] <= goal // ratio]
            visible = visible_from_valid(rows, max_train=goal // ratio, target=goal)
            yield (dataset, int(ratio), visible, truth.reindex(visible.models).to_numpy(dtype=float),
                   cost_fraction(rows, max_train=goal // ratio, target=goal))


def _fitted(name, visible):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # failed fits fall back to the last loss, flagged there
        return _method(name).fit_visible(visible)
