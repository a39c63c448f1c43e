"""The selection benchmark protocol of Lin et al. (2024).

For a data-budget ratio r, only sizes ≤ target / r are visible (plus the zero-shot
loss and the parameter counts); every method predicts each candidate's loss at
``target`` (by default the largest size in the table); PearCorr is computed over all
candidates between predicted and true loss, RelAcc for the candidate ranked first.
``progressive`` may spend the FLOPs that the other methods spend at ratio r,
distributed as it chooses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .curves import MIN_POSITIVE_SIZES, one_dataset, validate_curves
from .metrics import cost_fraction, pearcorr, relacc, spearman, top1_regret
from .predict import PREDICTIVE_METHODS, check_level, predict_visible
from .progressive import ProgressiveSelector
from .selection import DEFAULT_METHOD, make_selector
from .successive_halving import SuccessiveHalvingSelector
from .visible import visible_from_valid

__all__ = ["DEFAULT_RATIOS", "DEFAULT_METHOD", "METHODS", "BenchmarkResult", "run_benchmark", "usable_ratios"]

DEFAULT_RATIOS = (8, 16, 32, 64, 128, 256, 512)
METHODS = ("zeroshot", "subtuning", "modelsize", "vanilla", "rectified", "ats", "lensllm", "robust_curvature",
           "slope_drift", "curvature_drift", "backtested_pick", "successive_halving", "progressive")


@dataclass
class BenchmarkResult:
    """Output of :func:`run_benchmark`.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (dataset, method, ratio): max_train, pearson, relacc,
        spearman, regret, cost_fraction, chosen.
    predictions : pandas.DataFrame
        One row per (dataset, method, ratio, model): predicted, true; with a
        ``level``, also low, high and p_best for the methods of
        :data:`~lensllm_nb.analysis.predict.PREDICTIVE_METHODS`.
    level : float or None
        Level of the intervals, when asked for.
    dataset : str
    target : int
    wall_seconds : float
    skipped : list of dict
        Methods the data cannot serve (``{"method", "reason"}``), e.g. ``zeroshot``
        without zero-shot losses; they have no rows.
    """

    results: pd.DataFrame
    predictions: pd.DataFrame
    dataset: str
    target: int
    wall_seconds: float
    level: float | None = None
    skipped: list = field(default_factory=list)

    def to_json_dict(self) -> dict:
        """The stable JSON contract of ``lensllm-nb benchmark --format json``."""
        keys = ["method", "ratio", "max_train", "pearson", "relacc", "spearman", "cost_fraction", "chosen"]
        rows = []
        for rec in self.results[keys].to_dict("records"):
            rows.append({k: (int(v) if k in ("ratio", "max_train") else
                             str(v) if k in ("method", "chosen") else float(v)) for k, v in rec.items()})
        doc = {"dataset": self.dataset, "target": int(self.target), "default_method": DEFAULT_METHOD,
               "results": rows, "wall_seconds": float(self.wall_seconds)}
        if self.skipped:
            doc["skipped_methods"] = [dict(s) for s in self.skipped]
        if self.level is not None:
            doc["level"] = float(self.level)
            cols = ["method", "ratio", "model", "predicted", "low", "high", "p_best", "true"]
            with_interval = self.predictions.dropna(subset=["low"])[cols]
            doc["predictions"] = [{k: (int(v) if k == "ratio" else str(v) if k in ("method", "model") else float(v))
                                   for k, v in rec.items()} for rec in with_interval.to_dict("records")]
        return doc


def _check_methods(methods):
    if methods is None:
        return list(METHODS)
    # One name is one method, not its letters; a repeated name is run once.
    methods = [methods] if isinstance(methods, str) else methods
    methods = list(dict.fromkeys(str(m).strip().lower() for m in methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"`methods` has unknown name(s) {unknown}; choose from {', '.join(METHODS)}.")
    return methods


def _check_ratios(ratios):
    ratios = list(dict.fromkeys([ratios] if isinstance(ratios, (int, np.integer)) else ratios))
    bad = [r for r in ratios if not (isinstance(r, (int, np.integer)) and r > 1)]
    if bad or not ratios:
        raise ConfigError(f"`ratios` must be integers > 1, got {bad or ratios}; e.g. 8,16,32.")
    return ratios


def usable_ratios(rows, ratios, target):
    """Split ``ratios`` into those leaving every candidate ≥ 3 visible sizes and the skipped ones.

    Parameters
    ----------
    rows : pandas.DataFrame
        One dataset's validated rows.
    ratios : sequence of int
    target : int

    Returns
    -------
    (usable, skipped) : list of int, list of dict
        ``skipped`` holds ``{"ratio", "reason"}``; the reason names the candidates short of sizes.
    """
    sizes = rows[(rows["n_train"] > 0) & (rows["n_train"] < target)].groupby("model")["n_train"]
    usable, skipped = [], []
    for ratio in ratios:
        counts = sizes.apply(lambda s, cut=target // ratio: int((s.unique() <= cut).sum()))
        short = counts[counts < MIN_POSITIVE_SIZES]
        if short.empty:
            usable.append(ratio)
            continue
        skipped.append({"ratio": int(ratio), "reason": f"sizes <= {target // ratio:,} leave {int(short.min())} "
                        f"measured size(s) for {sorted(short.index)[:3]}"
                        f"{f' and {len(short) - 3} more' if len(short) > 3 else ''}, fewer than {MIN_POSITIVE_SIZES}"})
    return usable, skipped


def _largest_usable_ratio(rows, target) -> int:
    """The largest ratio that leaves every candidate 3 visible sizes (1 when none does)."""
    below = rows[(rows["n_train"] > 0) & (rows["n_train"] < target)].groupby("model")["n_train"]
    third = below.apply(lambda s: np.sort(s.unique())[MIN_POSITIVE_SIZES - 1]
                        if s.nunique() >= MIN_POSITIVE_SIZES else target)
    return max(1, int(target // third.max()))


def run_benchmark(table, *, methods=None, target=None, ratios=DEFAULT_RATIOS, dataset=None,
                  level=None) -> BenchmarkResult:
    """Run the selection protocol on one dataset of a tidy curves table.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table; every model must have a loss at ``target``.
    methods : list of str, optional
        Subset of :data:`METHODS`; default all.
    target : int, optional
        Size whose loss is predicted; default the largest size in the table.
    ratios : sequence of int
        Data-budget ratios r: sizes ≤ target / r are visible.
    dataset : str, optional
        Needed when the table holds several datasets.
    level : float, optional
        When given, the methods with a predictive distribution also record
        their interval at this level and p_best for every model.

    Returns
    -------
    BenchmarkResult

    Raises
    ------
    ConfigError
        For a model without a loss at ``target``, or a ratio that leaves some
        candidate fewer than 3 visible sizes (see :func:`usable_ratios`).
    """
    start = time.perf_counter()
    if level is not None:
        level = check_level(level)
    methods = _check_methods(methods)
    ratios = _check_ratios(ratios)
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    df, dataset = one_dataset(df, dataset)
    target = int(df["n_train"].max()) if target is None else target
    if not (isinstance(target, (int, np.integer)) and target > 0):
        raise ConfigError(f"`target` must be a positive integer size, got {target!r}.")
    truth = df[df["n_train"] == target].groupby("model")["test_loss"].mean()
    missing = sorted(set(df["model"]) - set(truth.index))
    if missing:
        raise ConfigError(f"`target`={target}: no measured loss at that size for {missing[:3]}; "
                          "the benchmark needs the true loss of every model at the target; pass a `target` "
                          "(CLI: --target) that every model reaches, or leave those models out.")
    _refuse_short_ratios(df, ratios, target)
    rows, preds, skipped = [], [], {}
    # Progressive selection may buy any size below the target; its pool is cut once.
    below = df[df["n_train"] < target]
    buying = {"progressive", "successive_halving"} & set(methods)
    pool = visible_from_valid(below, max_train=int(target) - 1, target=target) if buying else None
    # The FLOPs kinds the methods need (each costs a pass over the table per ratio).
    kinds = {"all" if m in buying else make_selector(m)._cost_sizes for m in methods}
    for ratio in ratios:
        max_train = target // ratio
        # The protocol hides the target itself and everything above the budget;
        # the visible curves are cut once and shared by every method.
        visible_rows = df[df["n_train"] <= max_train]
        visible = visible_from_valid(visible_rows, max_train=max_train, target=target)
        costs = {kind: cost_fraction(visible_rows, max_train=max_train, target=target, sizes=kind)
                 for kind in kinds}
        for method in methods:
            if method in skipped:
                continue
            try:
                selector = _fit_method(method, visible, costs, pool, below, target)
            except ConfigError as exc:
                # A method the data cannot serve (zeroshot without n = 0) is skipped, not a failure.
                skipped[method] = str(exc)
                continue
            rows.append(_result_row(dataset, method, ratio, max_train, selector, truth))
            true = truth.reindex(selector.predictions_.index).to_numpy()
            frame = pd.DataFrame({"dataset": dataset, "method": method, "ratio": int(ratio),
                                  "model": selector.predictions_.index,
                                  "predicted": selector.predictions_.to_numpy(), "true": true})
            if level is not None and method in PREDICTIVE_METHODS:
                dist = predict_visible(visible, method=method, level=level).frame.set_index("model")
                frame = frame.join(dist[["low", "high", "p_best"]], on="model")
            preds.append(frame)
    if not rows:
        raise ConfigError(f"no method could run on dataset {dataset!r}: "
                          + "; ".join(f"{m}: {r}" for m, r in skipped.items()))
    results = pd.DataFrame(rows)
    results = results[~results["method"].isin(list(skipped))].reset_index(drop=True)
    predictions = pd.concat(preds, ignore_index=True)
    predictions = predictions[~predictions["method"].isin(list(skipped))].reset_index(drop=True)
    return BenchmarkResult(results=results, predictions=predictions, dataset=dataset, target=int(target),
                           wall_seconds=time.perf_counter() - start, level=None if level is None else float(level),
                           skipped=[{"method": m, "reason": r} for m, r in skipped.items()])


def _refuse_short_ratios(df, ratios, target) -> None:
    """A ratio that leaves some candidate fewer than 3 visible sizes cannot be scored: say which and what fits."""
    _, short = usable_ratios(df, ratios, target)
    if short:
        largest = _largest_usable_ratio(df, target)
        raise ConfigError(f"`ratios` {short[0]['ratio']}: {short[0]['reason']}; use ratios up to {largest} "
                          "(CLI: --ratios), or leave those candidates out."
                          if largest > 1 else
                          f"`ratios` {short[0]['ratio']}: {short[0]['reason']}, and no ratio leaves them "
                          f"{MIN_POSITIVE_SIZES}; measure more sizes below the target, or leave them out.")


def _fit_method(method, visible, costs, pool, below, target):
    """One method fitted at one budget: the fixed methods on the visible curves, the buying ones on the pool."""
    if method == "progressive":
        return ProgressiveSelector().fit_pool(pool, below, target=target, budget=costs["all"])
    if method == "successive_halving":
        return SuccessiveHalvingSelector().fit_pool(pool, below, target=target, budget=costs["all"])
    selector = make_selector(method)
    return selector.fit_visible(visible, cost_fraction=costs[selector._cost_sizes])


def _result_row(dataset, method, ratio, max_train, selector, truth):
    true = truth.reindex(selector.predictions_.index).to_numpy()
    pred = selector.predictions_.to_numpy()
    chosen_true = truth[selector.chosen_]
    return {"dataset": dataset, "method": method, "ratio": int(ratio), "max_train": int(max_train),
            "pearson": pearcorr(pred, true), "relacc": relacc(chosen_true, true),
            "spearman": spearman(pred, true), "regret": top1_regret(chosen_true, true),
            "cost_fraction": float(selector.cost_fraction_), "chosen": selector.chosen_}

