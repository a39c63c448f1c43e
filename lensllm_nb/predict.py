"""The one prediction engine: every candidate's loss at a target size, with uncertainty.

For a curves table, a budget ``max_train`` (every size above it is ignored) and a
``target`` size, :func:`predict_candidates` returns per candidate the point
prediction of a method, an interval at any level, ``p_best`` (the probability that
the candidate has the lowest loss at ``target``) and ``expected_regret`` (the
expected loss gap to the best if this candidate is chosen). The selectors, the
progressive loop, the CLI, the notebooks and the widget all read their predictions
from here.

The predictive distribution of a candidate's log loss at the target is normal,
centred on the method's prediction, with a standard deviation built only from the
visible points of the curves at hand (never from the target losses):

* **extrapolator disagreement** — the root-mean-square gap between the method's
  prediction and those of the reference extrapolators (:data:`REFERENCE_METHODS`):
  where credible extrapolations of the same points disagree, the target is
  uncertain;
* **backtest error scaled by the horizon** — the largest visible size is predicted
  from the smaller ones by the method itself; the pooled robust spread of those
  log errors (median absolute error, normal scale) per doubling of extrapolation,
  times the number of doublings from the last visible size to the target.

The two are added in quadrature and multiplied by :data:`SCALE`, the single
calibration constant, chosen leave-one-dataset-out (see ``docs/BENCHMARKS.md``).
Candidates are treated as independent given the visible points, so ``p_best`` and
the expected loss of the best candidate come from one deterministic quadrature.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .curves import validate_curves
from .errors import ConfigError
from .metrics import cost_fraction as _cost_fraction
from .select import DEFAULT_METHOD, VisibleCurves, make_selector, visible_curves

__all__ = [
    "predict_candidates",
    "predict_visible",
    "CandidatePredictions",
    "DEFAULT_METHOD",
    "PREDICTIVE_METHODS",
    "REFERENCE_METHODS",
    "SCALE",
    "p_best",
    "expected_regret",
]

# Methods whose prediction is a loss at the target (the baselines rank by a proxy).
PREDICTIVE_METHODS = ("robust_curvature", "vanilla", "rectified", "lensllm", "ats")
# Extrapolators whose disagreement with the method measures the horizon risk.
REFERENCE_METHODS = ("ats", "vanilla", "rectified", "robust_curvature")
# Calibration constant on the combined scale (see module docstring).
SCALE = 1.0
# Quadrature points for p_best and the expected best loss.
_GRID = 2048
# Smallest log-scale allowed: a perfectly flat set of curves must not give a
# zero-width interval (0.1% of the loss).
_MIN_SCALE = 1e-3


@dataclass(frozen=True)
class CandidatePredictions:
    """Predictions of every candidate at one target, best first.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per candidate, sorted best first: model, predicted, low, high,
        p_best, expected_regret.
    chosen : str
        The recommended model (first row).
    method, dataset, max_train, target, level, cost_fraction
        What was asked, and the FLOPs of the visible runs relative to fine-tuning
        every candidate on ``target``.
    log_center, log_scale : pandas.Series
        Mean and standard deviation of each candidate's predictive log loss.
    """

    frame: pd.DataFrame
    chosen: str
    method: str
    dataset: str
    max_train: int
    target: int
    level: float
    cost_fraction: float
    log_center: pd.Series = field(repr=False)
    log_scale: pd.Series = field(repr=False)

    def interval(self, level) -> pd.DataFrame:
        """Interval of every candidate at another ``level`` (same distribution, same order)."""
        low, high = _bounds(self.log_center.to_numpy(), self.log_scale.to_numpy(), _check_level(level))
        return pd.DataFrame({"model": list(self.log_center.index), "low": low, "high": high}) \
            .set_index("model").loc[self.frame["model"]].reset_index()

    def to_json_dict(self) -> dict:
        """The ``lensllm-nb select --format json`` contract (strict-JSON-ready)."""
        models = [{"model": str(r["model"]), **{k: float(r[k]) for k in
                   ("predicted", "low", "high", "p_best", "expected_regret")}}
                  for r in self.frame.to_dict("records")]
        return {"dataset": str(self.dataset), "method": str(self.method), "max_train": int(self.max_train),
                "target": int(self.target), "level": float(self.level), "chosen": str(self.chosen),
                "cost_fraction": float(self.cost_fraction), "models": models}


def predict_candidates(table, *, max_train, target=None, method=DEFAULT_METHOD, level=0.9, dataset=None,
                       models=None) -> CandidatePredictions:
    """Predict every candidate's loss at ``target`` from sizes ≤ ``max_train``.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table (model, dataset, n_train, seed, test_loss, [params, ...]);
        not modified.
    max_train : int
        Budget: every size above it is ignored.
    target : int, optional
        Size whose loss is predicted; default the largest size in the table.
    method : str
        A method with a predictive distribution (:data:`PREDICTIVE_METHODS`).
    level : float
        Level of the ``low``/``high`` interval, between 0 and 1.
    dataset : str, optional
        Required when the table holds several datasets.
    models : list of str, optional
        Restrict to these candidates.

    Returns
    -------
    CandidatePredictions
    """
    level = _check_level(level)
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    datasets = sorted(df["dataset"].unique())
    if dataset is None:
        if len(datasets) > 1:
            raise ConfigError(f"the table holds several datasets {datasets}; pass `dataset=` to choose one.")
        dataset = datasets[0]
    elif dataset not in datasets:
        raise ConfigError(f"`dataset` {dataset!r} is not in the table; choose from {datasets}.")
    df = df[df["dataset"] == dataset]
    if models is not None:
        unknown = sorted(set(models) - set(df["model"]))
        if unknown:
            raise ConfigError(f"`models` has names not in the table: {unknown[:5]}; "
                              f"choose from {sorted(df['model'].unique())[:10]}.")
        df = df[df["model"].isin(list(models))]
    target = int(df["n_train"].max()) if target is None else target
    if not (isinstance(max_train, (int, np.integer)) and max_train > 0):
        raise ConfigError(f"`max_train` must be a positive integer, got {max_train!r}.")
    rows = df[df["n_train"] <= max_train]
    visible = visible_curves(rows, max_train=int(max_train), target=target)
    cost = _cost_fraction(rows, max_train=int(max_train), target=int(target))
    return predict_visible(visible, method=method, level=level, dataset=dataset, max_train=int(max_train),
                           cost_fraction=cost)


def predict_visible(visible: VisibleCurves, *, method=DEFAULT_METHOD, level=0.9, dataset="", max_train=None,
                    cost_fraction=float("nan")) -> CandidatePredictions:
    """:func:`predict_candidates` on curves already cut by :func:`~lensllm_nb.select.visible_curves`."""
    method = _check_method(method)
    level = _check_level(level)
    center, scale = log_predictive(visible, method=method)
    return _assemble(visible, center, scale, method=method, level=level, dataset=dataset,
                     max_train=max_train, cost_fraction=cost_fraction)


def log_predictive(visible: VisibleCurves, *, method=DEFAULT_METHOD):
    """Mean and standard deviation of each candidate's predictive log loss at the target.

    Returns
    -------
    (center, scale) : tuple of ndarray
    """
    preds = {}
    for name in dict.fromkeys((method,) + REFERENCE_METHODS):
        with warnings.catch_warnings():
            # A failed law fit falls back to its last visible loss; the spread
            # then says so, and the selector's warning would repeat it per call.
            warnings.simplefilter("ignore", UserWarning)
            preds[name] = np.log(make_selector(name).fit_visible(visible).predictions_.to_numpy())
    center = preds[method]
    spread = np.sqrt(np.mean([(p - center) ** 2 for p in preds.values()], axis=0))
    horizon = np.log2(visible.target / np.array([s[-1] for s in visible.sizes]))
    backtest = _backtest_per_doubling(visible, method) * horizon
    scale = SCALE * np.sqrt(spread ** 2 + backtest ** 2)
    return center, np.maximum(scale, _MIN_SCALE)


def _backtest_per_doubling(visible, method):
    """Pooled robust log error per doubling when the largest visible size is predicted from the rest."""
    selector = make_selector(method)
    if min(s.size for s in visible.sizes) <= max(selector._min_points, 2):
        # Too few points to hold one out with this method: a straight line
        # through the rest (AtS) still measures how far the tail bends.
        selector = make_selector("ats")
        if min(s.size for s in visible.sizes) <= 2:
            return np.zeros(len(visible.models))
    held = VisibleCurves(models=visible.models, sizes=[s[:-1] for s in visible.sizes],
                         losses=[l[:-1] for l in visible.losses], zero_shot=visible.zero_shot,
                         params=visible.params, target=int(max(s[-1] for s in visible.sizes)))
    # Candidates measured at the same largest size (the protocol) share one fit;
    # otherwise each curve is backtested to its own largest size.
    if _same_last(visible):
        back = np.log(selector.fit_visible(held).predictions_.to_numpy())
    else:
        back = _per_curve_backtest(selector, held, visible)
    err = back - np.log([l[-1] for l in visible.losses])
    steps = np.log2(np.array([s[-1] / s[-2] for s in visible.sizes]))
    per = np.abs(err) / steps
    # Median absolute error (normal scale) pooled over candidates: one odd curve
    # cannot widen every interval.
    return np.full(len(visible.models), 1.4826 * float(np.median(per)))


def _same_last(visible):
    return len({float(s[-1]) for s in visible.sizes}) == 1


def _per_curve_backtest(selector, held, visible):
    out = np.empty(len(visible.models))
    for i in range(len(visible.models)):
        one = VisibleCurves(models=[held.models[i]], sizes=[held.sizes[i]], losses=[held.losses[i]],
                            zero_shot=held.zero_shot[i:i + 1], params=held.params[i:i + 1],
                            target=int(visible.sizes[i][-1]))
        out[i] = np.log(selector.fit_visible(one).predictions_.iloc[0])
    return out


def _assemble(visible, center, scale, *, method, level, dataset, max_train, cost_fraction):
    pbest = p_best(center, scale)
    regret = expected_regret(center, scale)
    low, high = _bounds(center, scale, level)
    frame = pd.DataFrame({"model": visible.models, "predicted": np.exp(center), "low": low, "high": high,
                          "p_best": pbest, "expected_regret": regret})
    frame = frame.sort_values(["predicted", "model"], kind="stable").reset_index(drop=True)
    index = pd.Index(visible.models, name="model")
    if max_train is None:
        max_train = int(max(s[-1] for s in visible.sizes))
    return CandidatePredictions(frame=frame, chosen=str(frame["model"].iloc[0]), method=method,
                                dataset=str(dataset), max_train=int(max_train), target=int(visible.target),
                                level=float(level), cost_fraction=float(cost_fraction),
                                log_center=pd.Series(center, index=index), log_scale=pd.Series(scale, index=index))


def _quadrature(center, scale):
    """Grid over log loss, the normal densities and log survival functions on it."""
    y = np.linspace(np.min(center - 9 * scale), np.max(center + 9 * scale), _GRID)
    z = (y[None, :] - center[:, None]) / scale[:, None]
    dens = stats.norm.pdf(z) / scale[:, None]
    log_sf = stats.norm.logsf(z)
    return y, dens, log_sf


def p_best(center, scale) -> np.ndarray:
    """Probability that each candidate has the lowest loss (independent normal log losses).

    ``P_i = ∫ φ_i(y) Π_{j≠i} S_j(y) dy`` on a fixed grid; normalized so the
    probabilities sum to 1 exactly.
    """
    center, scale = np.asarray(center, float), np.asarray(scale, float)
    if center.size == 1:
        return np.ones(1)
    y, dens, log_sf = _quadrature(center, scale)
    others = np.exp(log_sf.sum(axis=0)[None, :] - log_sf)
    mass = np.trapezoid(dens * others, y, axis=1)
    return mass / mass.sum()


def expected_regret(center, scale) -> np.ndarray:
    """Expected loss of each candidate minus the expected loss of the best one (≥ 0)."""
    center, scale = np.asarray(center, float), np.asarray(scale, float)
    mean_loss = np.exp(center + scale ** 2 / 2)
    if center.size == 1:
        return np.zeros(1)
    y, dens, log_sf = _quadrature(center, scale)
    # Density of the minimum: Σ_i φ_i Π_{j≠i} S_j.
    f_min = (dens * np.exp(log_sf.sum(axis=0)[None, :] - log_sf)).sum(axis=0)
    best = np.trapezoid(np.exp(y) * f_min, y) / np.trapezoid(f_min, y)
    return np.maximum(mean_loss - best, 0.0)


def _bounds(center, scale, level):
    q = stats.norm.ppf(0.5 + level / 2)
    return np.exp(center - q * scale), np.exp(center + q * scale)


def _check_level(level):
    if not (isinstance(level, (int, float, np.floating)) and 0 < float(level) < 1):
        raise ConfigError(f"`level` must be between 0 and 1, got {level!r}; e.g. 0.9 for a 90% interval.")
    return float(level)


def _check_method(method):
    name = str(method).strip().lower()
    if name not in PREDICTIVE_METHODS:
        raise ConfigError(f"`method` {method!r} has no predictive distribution; choose from "
                          f"{', '.join(PREDICTIVE_METHODS)}.")
    return name
