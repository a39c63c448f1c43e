"""Selection metrics and fine-tuning cost.

PearCorr and RelAcc follow Lin et al. (2024): PearCorr is the Pearson correlation
between the predicted and the true full-data loss over all candidates; RelAcc is
``(worst − chosen) / (worst − best)`` of the true full-data loss of the candidate
ranked first. Spearman correlation and top-1 regret (true loss of the chosen
candidate minus the best true loss) complete the picture.

Cost is counted in training FLOPs, ≈ 6 × parameters × tokens; when only example
counts are known, tokens are taken proportional to examples, and when parameter
counts are unknown every candidate counts the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError

__all__ = ["pearcorr", "spearman", "relacc", "top1_regret", "training_flops", "cost_fraction", "full_data_flops",
           "COSTLY_FRACTION", "budget_warning"]

# Above this fraction of fine-tuning every candidate on the target, a selection
# saves too little to be worth it unsaid (issue 21).
COSTLY_FRACTION = 1 / 8


def _pair(pred, true):
    pred = np.asarray(pred, dtype=float)
    true = np.asarray(true, dtype=float)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ConfigError(f"`pred` and `true` must be 1-D of the same length, got {pred.shape} and {true.shape}.")
    if pred.size < 2:
        raise ConfigError(f"a correlation needs at least 2 candidates, got {pred.size}.")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(true))):
        raise ConfigError("`pred` and `true` must be finite; a selector returned NaN or inf.")
    return pred, true


def pearcorr(pred, true) -> float:
    """Pearson correlation of predicted and true loss (0 when either is constant)."""
    pred, true = _pair(pred, true)
    if np.ptp(pred) == 0 or np.ptp(true) == 0:
        return 0.0
    return float(stats.pearsonr(pred, true)[0])


def spearman(pred, true) -> float:
    """Spearman rank correlation of predicted and true loss (0 when constant)."""
    pred, true = _pair(pred, true)
    if np.ptp(pred) == 0 or np.ptp(true) == 0:
        return 0.0
    return float(stats.spearmanr(pred, true)[0])


def relacc(chosen_true, true) -> float:
    """Relative accuracy ``(worst − chosen) / (worst − best)`` of the true losses."""
    true = np.asarray(true, dtype=float)
    worst, best = true.max(), true.min()
    if worst == best:
        return 1.0
    return float((worst - chosen_true) / (worst - best))


def top1_regret(chosen_true, true) -> float:
    """True loss of the chosen candidate minus the best true loss (≥ 0)."""
    return float(chosen_true - np.min(np.asarray(true, dtype=float)))


def training_flops(table) -> pd.Series:
    """Training FLOPs of each row of a tidy table: ``6 × params × tokens``.

    Uses the ``flops`` column when present, else ``tokens``, else ``n_train``
    (tokens ∝ examples); ``params`` defaults to 1 when unknown.
    """
    if "flops" in table.columns and table["flops"].notna().all():
        return table["flops"].astype(float)
    tokens = table["tokens"] if "tokens" in table.columns and table["tokens"].notna().all() else table["n_train"]
    params = table["params"] if "params" in table.columns and table["params"].notna().all() else 1.0
    return 6.0 * np.asarray(params, dtype=float) * tokens.astype(float)


def cost_fraction(table, *, max_train, target, sizes="all") -> float:
    """FLOPs of fine-tuning every candidate on the visible sizes, relative to full data.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table (one dataset).
    max_train : int
        Largest visible size.
    target : int
        The full target-set size.
    sizes : {"all", "largest", "none"}
        Which visible sizes are fine-tuned: every positive size ≤ ``max_train``
        (law fits, AtS), only the largest (SubTuning), or none (zero-shot, size).

    Returns
    -------
    float
    """
    if sizes == "none":
        return 0.0
    per_model = table.drop_duplicates(["model", "n_train"])
    visible = per_model[(per_model["n_train"] > 0) & (per_model["n_train"] <= max_train)]
    if sizes == "largest":
        visible = visible[visible["n_train"] == visible.groupby("model")["n_train"].transform("max")]
    return float(training_flops(visible).sum() / full_data_flops(table, target=target))


def budget_warning(table, *, max_train, target):
    """One line when the visible sizes cost more than :data:`COSTLY_FRACTION` of full fine-tuning, else None.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table of one dataset (every candidate).
    max_train, target : int
        As in :func:`cost_fraction`.

    Returns
    -------
    str or None
        The figure and how to lower it: the largest measured budget within
        :data:`COSTLY_FRACTION`, or smaller subset sizes.
    """
    spent = cost_fraction(table, max_train=max_train, target=target)
    if spent <= COSTLY_FRACTION:
        return None
    sizes = sorted(int(n) for n in table["n_train"].unique() if 0 < n < max_train)
    cheaper = [n for n in sizes if cost_fraction(table, max_train=n, target=target) <= COSTLY_FRACTION]
    fix = (f"a budget (max_train) of {cheaper[-1]:,} stays within it" if cheaper else
           "no measured budget stays within it")
    return (f"Budget: the sizes ≤ {max_train:,} cost {spent:.0%} of fine-tuning every candidate on "
            f"{target:,} examples, more than 1/8; {fix}, or fine-tune smaller subsets (largest about "
            f"target/16 = {target // 16:,}).")


def full_data_flops(table, *, target) -> float:
    """FLOPs of fine-tuning every candidate of a tidy table on ``target`` examples.

    Tokens per example come from the ``tokens`` (or ``flops``) column when the
    table records them, else every example counts as one token-unit, like
    :func:`training_flops`.
    """
    per_model = table.drop_duplicates(["model", "n_train"])
    models = per_model.drop_duplicates("model")
    params = _params(models)
    rows = per_model[per_model["n_train"] > 0]
    if "tokens" in rows.columns and rows["tokens"].notna().all():
        per_example = (rows["tokens"] / rows["n_train"]).groupby(rows["model"]).mean()
    elif "flops" in rows.columns and rows["flops"].notna().all():
        per_example = (rows["flops"] / (6.0 * _params(rows)) / rows["n_train"]).groupby(rows["model"]).mean()
    else:
        return float(6.0 * params.sum() * target)
    return float(np.sum(6.0 * params * target * per_example.reindex(models["model"]).to_numpy()))


def _params(frame):
    if "params" in frame.columns and frame["params"].notna().all():
        return np.asarray(frame["params"], dtype=float)
    return np.ones(len(frame))
