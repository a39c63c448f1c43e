"""The one prediction engine: every candidate's loss at a target size, with uncertainty.

For a curves table, a budget ``max_train`` (every size above it is ignored) and a
``target`` size, :func:`predict_candidates` returns per candidate the point
prediction of a method, an interval at any level, ``p_best`` (the probability that
the candidate has the lowest loss at ``target``) and ``expected_regret`` (the
expected gap in log loss to the best if this candidate is chosen, ≈ the relative
loss excess: 0.01 is 1%), and the pick with its reason (it can differ from the top
of the ranking: :mod:`lensllm_nb.analysis.pair_backtest`). Selectors, the progressive
loop, the CLI, the notebooks and the widget all read their predictions from here.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.predict``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .curve_envelope import log_envelope
from .curves import one_dataset, validate_curves
from .visible import VisibleCurves, cut_key, visible_from_valid
from .metrics import cost_fraction as _cost_fraction
from .noise_floor import visible_noise
from .selection import DEFAULT_METHOD, make_selector
from .self_calibration import backtest_multiplier, blended_multiplier

__all__ = [
    "predict_candidates",
    "check_level",
    "predict_visible",
    "CandidatePredictions",
    "DEFAULT_METHOD",
    "PREDICTIVE_METHODS",
    "REFERENCE_METHODS",
    "SCALE",
    "calibrate_scale",
    "log_predictive",
    "visible_noise",
    "p_best",
    "expected_regret",
]

# Methods whose prediction is a loss at the target (the baselines rank by a proxy).
# The intervals are calibrated for DEFAULT_METHOD; the others share its scale rule.
PREDICTIVE_METHODS = ("backtested_pick", "curvature_drift", "robust_curvature", "slope_drift", "ats", "vanilla", "rectified",
                      "lensllm")
# A method whose shown predictions are another's (its own work is the pick) is backtested
# as that one by the self-calibration: the same centres, without its pick's own backtests.
_PREDICTS_AS = {"backtested_pick": "curvature_drift"}
# Extrapolators whose disagreement with the method measures the horizon risk.
REFERENCE_METHODS = ("ats", "robust_curvature", "slope_drift")
# Calibration constant (the corpus prior, calibrated on FLAN without self-calibration; the
# engine raises it where a user's own backtests ask for more) and degrees of freedom.
SCALE = 2.461
DOF = len(REFERENCE_METHODS) - 1  # 2: the closed forms _t2_sf/_t2_ppf rely on it
# Quantile levels of the quadrature: midpoints of 512 bins of the central 99.9%.
_TAIL = 0.0005
_LEVELS = _TAIL + (1 - 2 * _TAIL) * (np.arange(512) + 0.5) / 512
# p_best's shared grid: at most 2^27 grid cells of work (seconds at 10,000
# candidates); arrays of at most 2^20 cells (8 MB) at a time.
_GRID_WORK = 2 ** 27
_CHUNK_CELLS = 2 ** 20
# Smallest log-scale allowed (0.1% of the loss): extrapolators that agree exactly
# must not give a zero-width interval.
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
        Centre and scale of each candidate's predictive log loss, a Student-t
        with :data:`DOF` degrees of freedom, censored to
        [``log_floor``, ``log_ceiling``].
    chosen_reason : str
        Why ``chosen`` is the pick, in one sentence (it can differ from the
        first row, the lowest prediction).
    variant : str
        What ran, for a method with variants (``lensllm``: its selector's
        ``variant_``, "steps", "fitted_t" or "rectified"); empty otherwise.
    log_floor, log_ceiling : pandas.Series
        Each candidate's learning-curve envelope at ``target``
        (:func:`~lensllm_nb.analysis.curve_envelope.log_envelope`): the predictive
        log loss is the t censored to it, so ``predicted`` (its median), the
        intervals, ``p_best`` and ``expected_regret`` never leave it.
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
    chosen_reason: str = ""
    variant: str = ""
    log_floor: pd.Series = field(default=None, repr=False)
    log_ceiling: pd.Series = field(default=None, repr=False)

    def interval(self, level) -> pd.DataFrame:
        """Interval of every candidate at another ``level`` (same distribution, same order)."""
        low, high = _bounds(self.log_center.to_numpy(), self.log_scale.to_numpy(), check_level(level),
                            *_envelope_arrays(self.log_floor, self.log_ceiling, self.log_center.size))
        return pd.DataFrame({"model": list(self.log_center.index), "low": low, "high": high}) \
            .set_index("model").loc[self.frame["model"]].reset_index()

    def to_json_dict(self) -> dict:
        """The ``lensllm-nb select --format json`` contract (strict-JSON-ready)."""
        models = [{"model": str(r["model"]), **{k: float(r[k]) for k in
                   ("predicted", "low", "high", "p_best", "expected_regret")}}
                  for r in self.frame.to_dict("records")]
        return {"dataset": str(self.dataset), "method": str(self.method), "max_train": int(self.max_train),
                "target": int(self.target), "level": float(self.level), "chosen": str(self.chosen),
                "chosen_reason": str(self.chosen_reason), "cost_fraction": float(self.cost_fraction), "models": models}


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
    level = check_level(level)
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    df, dataset = one_dataset(df, dataset)
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
    visible = visible_from_valid(rows, max_train=int(max_train), target=target)
    cost = _cost_fraction(rows, max_train=int(max_train), target=int(target))
    return predict_visible(visible, method=method, level=level, dataset=dataset, max_train=int(max_train),
                           cost_fraction=cost)


def predict_visible(visible: VisibleCurves, *, method=DEFAULT_METHOD, level=0.9, dataset="", max_train=None,
                    cost_fraction=float("nan")) -> CandidatePredictions:
    """:func:`predict_candidates` on curves already cut by :func:`~lensllm_nb.analysis.visible.visible_curves`.

    Parameters
    ----------
    visible : VisibleCurves
    method, level
        As in :func:`predict_candidates`.
    dataset : str
        Name recorded in the result.
    max_train : int, optional
        Budget recorded in the result; default the largest visible size.
    cost_fraction : float
        FLOPs of the visible runs relative to full data, recorded in the result.

    Returns
    -------
    CandidatePredictions
    """
    method = _check_method(method)
    level = check_level(level)
    fitted = _fit_methods(visible, method)
    center, scale = _center_and_scale(fitted, method, SCALE, visible)
    chosen, reason = _pick(fitted[method], visible)
    return _assemble(visible, center, scale, method=method, level=level, dataset=dataset,
                     max_train=max_train, cost_fraction=cost_fraction, chosen=chosen, reason=reason,
                     variant=str(getattr(fitted[method], "variant_", "")))


def log_predictive(visible: VisibleCurves, *, method=DEFAULT_METHOD, scale=SCALE, self_calibrate=True):
    """Centre and scale of each candidate's predictive log loss at the target (Student-t, :data:`DOF`).

    Parameters
    ----------
    visible : VisibleCurves
    method : str
    scale : float
        Calibration multiplier, the corpus prior; the default :data:`SCALE` (other values
        serve the leave-one-dataset-out benchmark).
    self_calibrate : bool
        Raise ``scale`` where the user's own backtests ask for more
        (:mod:`~lensllm_nb.analysis.self_calibration`), as the engine does; False gives the
        prior alone (how :data:`SCALE` is calibrated).

    Returns
    -------
    (center, scale) : tuple of ndarray
    """
    return _center_and_scale(_fit_methods(visible, method), method, scale, visible, self_calibrate=self_calibrate)


# --- How the predictive distribution is built (centre, scale) and the pick is read --------------
def _fit_methods(visible, method, *, given=None):
    """The method and the reference extrapolators, each fitted once on ``visible`` (``given``: ones already fitted)."""
    fitted = dict(given or {})
    for name in dict.fromkeys((method,) + REFERENCE_METHODS):
        if name in fitted:
            continue
        with warnings.catch_warnings():
            # A failed law fit falls back to its last visible loss; the spread
            # then says so, and the selector's warning would repeat it per call.
            warnings.simplefilter("ignore", UserWarning)
            fitted[name] = make_selector(name).fit_visible(visible)
        # A method built from reference extrapolators hands over their fits.
        fitted.update(getattr(fitted[name], "components_", {}))
    return fitted


def _center_and_scale(fitted, method, scale, visible, *, self_calibrate=True):
    """Centre: the method's log prediction; scale: the multiplier × the reference spread, with the noise floor.

    The multiplier is ``scale`` blended with the user's own backtests unless ``self_calibrate`` is False.
    """
    center, spread = _center_and_spread(fitted, method)
    if self_calibrate:
        own = backtest_multiplier(visible, _backtest_fitter(fitted[method], method), median_abs=_t2_ppf(0.75))
        scale = blended_multiplier(scale, own)
    return center, np.maximum(np.hypot(scale * spread, visible_noise(visible)), _MIN_SCALE)


def _backtest_fitter(selector, method):
    """``cut -> (centre, spread)`` of the self-calibration's backtests, reusing the pick's own fits of the same cuts."""
    shown = _PREDICTS_AS.get(method, method)
    settings = make_selector(shown).get_params()
    done = {key: fit for key, fit in getattr(selector, "backtest_fits_", {}).items() if fit.get_params() == settings}

    def center_and_spread(cut):
        fit = done.get(cut_key(cut))
        given = None if fit is None else {shown: fit, **fit.components_}
        return _center_and_spread(_fit_methods(cut, shown, given=given), shown)

    return center_and_spread


def _center_and_spread(fitted, method):
    """The method's log prediction and its RMS log gap to the reference extrapolators."""
    preds = {name: np.log(sel.predictions_.to_numpy()) for name, sel in fitted.items()}
    center = preds[method]
    return center, np.sqrt(np.mean([(preds[m] - center) ** 2 for m in REFERENCE_METHODS], axis=0))


def _pick(selector, visible):
    """The fitted method's pick and its reason (a plain ranking's pick is its lowest prediction)."""
    reason = getattr(selector, "chosen_reason_", None)
    if reason is None:
        reason = f"{selector.chosen_}: lowest predicted loss at {visible.target:,} ({selector.name})."
    return str(selector.chosen_), str(reason)
# --- end of the distribution and pick helpers ---------------------------------------------------


def calibrate_scale(cases, *, method=DEFAULT_METHOD, level=0.9) -> float:
    """Smallest :data:`SCALE` whose ``level`` interval covers ``level`` of the given truths.

    This is how :data:`SCALE`, the engine's prior, was chosen (on FLAN, without the
    engine's self-calibration); use it on curves of your own tasks whose target losses
    are known.

    Parameters
    ----------
    cases : iterable of (VisibleCurves, array_like)
        Visible curves and the true loss at their target of each candidate, in
        the order of ``visible.models``.
    method : str
    level : float

    Returns
    -------
    float
    """
    method, level = _check_method(method), check_level(level)
    needed = []
    for visible, true in cases:
        center, spread = _center_and_spread(_fit_methods(visible, method), method)
        true = np.asarray(true, dtype=float)
        if true.shape != center.shape or not np.all(np.isfinite(true) & (true > 0)):
            raise ConfigError(f"`cases`: true losses must be positive, one per model ({center.size}), "
                              f"got shape {true.shape}.")
        floor, ceiling = log_envelope(visible)
        # A truth outside the learning-curve envelope is missed at any scale.
        outside = (np.log(true) < floor) | (np.log(true) > ceiling)
        needed.append(np.where(outside, np.inf, _needed_scale(np.abs(np.log(true) - center) / _t2_ppf(0.5 + level / 2),
                                                               spread, visible_noise(visible))))
    if not needed:
        raise ConfigError("`cases` is empty; pass (visible curves, true losses) pairs.")
    return float(np.quantile(np.concatenate(needed), level, method="higher"))


def _needed_scale(half, spread, noise):
    """Smallest multiplier m with max(√((m·spread)² + noise²), floor) ≥ ``half``, per case (inf if none)."""
    short = np.maximum(half ** 2 - noise ** 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(short > 0, np.sqrt(short) / spread, 0.0)
    return np.where(half <= _MIN_SCALE, 0.0, np.nan_to_num(m, nan=np.inf, posinf=np.inf))


def _assemble(visible, center, scale, *, method, level, dataset, max_train, cost_fraction, chosen, reason,
              variant):
    floor, ceiling = log_envelope(visible)
    pbest = p_best(center, scale, floor, ceiling)
    regret = expected_regret(center, scale, floor, ceiling)
    low, high = _bounds(center, scale, level, floor, ceiling)
    frame = pd.DataFrame({"model": visible.models, "predicted": np.exp(np.clip(center, floor, ceiling)), "low": low,
                          "high": high, "p_best": pbest, "expected_regret": regret})
    frame = frame.sort_values(["predicted", "model"], kind="stable").reset_index(drop=True)
    index = pd.Index(visible.models, name="model")
    if max_train is None:
        max_train = int(max(s[-1] for s in visible.sizes))
    return CandidatePredictions(frame=frame, chosen=chosen, chosen_reason=reason, variant=variant, method=method,
                                dataset=str(dataset), max_train=int(max_train), target=int(visible.target),
                                level=float(level), cost_fraction=float(cost_fraction),
                                log_center=pd.Series(center, index=index), log_scale=pd.Series(scale, index=index),
                                log_floor=pd.Series(floor, index=index), log_ceiling=pd.Series(ceiling, index=index))


def _envelope_arrays(floor, ceiling, n):
    """Floor and ceiling as arrays; an absent side is unbounded (±inf)."""
    return (np.full(n, -np.inf) if floor is None else np.asarray(floor, dtype=float),
            np.full(n, np.inf) if ceiling is None else np.asarray(ceiling, dtype=float))


def _others_survival(center, scale, floor, ceiling):
    """Mean over each candidate's quantiles of the others' joint survival (the unnormalised ``p_best``).

    ``Π_{j≠i} P(Y_j ≥ y_ik)`` at the quantiles ``y_ik`` of candidate i (its t quantiles
    at :data:`_LEVELS`, clipped to its envelope), averaged over k. The log survival of
    the t part, summed over all candidates, ``Λ(y)``, is shared by every i and i's own
    term is taken out exactly; it is evaluated at the quantiles themselves when they are
    fewer than the points of a fine grid (a few dozen candidates), else once on the grid
    (which holds every floor, where a term jumps) and read by cubic Hermite
    interpolation. A floor makes j's term 0 below it; a ceiling is applied exactly:
    the product is 0 once y passes any other candidate's ceiling. Memory is linear in
    the candidates: everything goes in chunks.

    Returns
    -------
    ndarray (n,)
    """
    levels = _t2_ppf(_LEVELS)
    everyone = np.arange(center.size)
    low = float(np.min(np.clip(center + scale * levels[0], floor, ceiling)))
    high = float(np.max(np.clip(center + scale * levels[-1], floor, ceiling)))
    size = _grid_size(high - low, float(np.min(scale)), center.size)
    direct = center.size * levels.size <= size
    if direct:
        points = np.concatenate([_quantiles(center, scale, floor, ceiling, rows, levels)
                                 for rows in _chunks(everyone, levels.size)]).ravel()
    else:  # each floor and the next float, so that a term's jump there is read exactly
        inside = floor[(floor > low) & (floor < high)]
        points = np.unique(np.concatenate([np.linspace(low, high, size), inside, np.nextafter(inside, np.inf)]))
    value, slope = np.zeros(points.size), np.zeros(points.size)
    for rows in _chunks(everyone, points.size):
        log_sf, d_log_sf = _log_sf_and_slope(points[None, :], center[rows, None], scale[rows, None], floor[rows, None])
        value += log_sf.sum(axis=0)
        slope += d_log_sf.sum(axis=0)
    lowest_other = _lowest_other(ceiling)
    mass = np.empty(center.size)
    for rows in _chunks(everyone, levels.size):
        y = _quantiles(center, scale, floor, ceiling, rows, levels)
        own, _ = _log_sf_and_slope(y, center[rows, None], scale[rows, None], floor[rows, None])
        total = value.reshape(center.size, levels.size)[rows] if direct else _hermite(points, value, slope, y)
        alive = y <= lowest_other[rows, None]
        mass[rows] = np.where(alive, np.exp(np.minimum(total - own, 0.0)), 0.0).mean(axis=1)
    return mass


def _quantiles(center, scale, floor, ceiling, rows, levels):
    """Quantiles of the censored t of candidates ``rows`` at the t quantiles ``levels``."""
    return np.clip(center[rows, None] + scale[rows, None] * levels, floor[rows, None], ceiling[rows, None])


def _lowest_other(ceiling):
    """For each candidate, the lowest ceiling among the others (+inf when alone)."""
    order = np.argsort(ceiling, kind="stable")
    out = np.full(ceiling.size, ceiling[order[0]])
    out[order[0]] = ceiling[order[1]] if ceiling.size > 1 else np.inf
    return out


def _grid_size(width, smallest_scale, n):
    """Points of the Λ grid: spacing 1/64 of the smallest scale, within a work budget of 2^27 cells."""
    wanted = int(np.ceil(width / (smallest_scale / 64))) + 1
    return int(np.clip(wanted, 4096, max(4096, _GRID_WORK // n)))


def _chunks(index, width):
    """Slices of `index` whose chunk × `width` arrays stay within :data:`_CHUNK_CELLS`."""
    step = max(1, _CHUNK_CELLS // max(width, 1))
    return [index[start:start + step] for start in range(0, index.size, step)]


def _log_sf_and_slope(y, center, scale, floor):
    """log P(Y ≥ y) of the t part of censored log losses and its derivative in y (0, 0 at or below the floor)."""
    t = (y - center) / scale
    sf = _t2_sf(t)
    density = (2.0 + t * t) ** -1.5
    above = y > floor
    return np.where(above, np.log(sf), 0.0), np.where(above, -density / (sf * scale), 0.0)


def _hermite(x, value, slope, at):
    """Cubic Hermite interpolation of (value, slope) given on the increasing grid `x`, read at `at`."""
    k = np.clip(np.searchsorted(x, at, side="right") - 1, 0, x.size - 2)
    h = x[k + 1] - x[k]
    s = (at - x[k]) / h
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * value[k] + (s3 - 2 * s2 + s) * h * slope[k]
            + (-2 * s3 + 3 * s2) * value[k + 1] + (s3 - s2) * h * slope[k + 1])


def p_best(center, scale, floor=None, ceiling=None) -> np.ndarray:
    """Probability that each candidate has the lowest loss (independent censored t log losses).

    ``P_i = E_{y ~ Y_i}[Π_{j≠i} P(Y_j ≥ y)]``, averaged over fixed quantile levels
    (deterministic); normalized so that the probabilities sum to 1. ``Y_i`` is the t
    with centre and scale censored to [``floor``, ``ceiling``] (each optional; log
    loss, as :func:`~lensllm_nb.analysis.curve_envelope.log_envelope` gives them).
    """
    center, scale = np.asarray(center, float), np.asarray(scale, float)
    if center.size == 1:
        return np.ones(1)
    mass = _others_survival(center, scale, *_envelope_arrays(floor, ceiling, center.size))
    return mass / mass.sum()


def expected_regret(center, scale, floor=None, ceiling=None) -> np.ndarray:
    """Expected log loss of each candidate minus the expected lowest log loss (≥ 0, finite).

    In log loss because there a t with 2 degrees of freedom has a mean (in loss
    units, e^Y, it has none; the former definition printed 3e+22 on a 4-model
    store). A regret of 0.01 means choosing this candidate costs about 1% of loss
    in expectation. With S the survival functions (of the t censored to
    [``floor``, ``ceiling``], as in :func:`p_best`), ``E[Y_i] − E[min_j Y_j] =
    ∫ (S_i(y) − Π_j S_j(y)) dy``, integrated on a grid that is fine between the
    centres and sinh-spaced out to the 1e-6 tail quantiles (the remaining tails
    add less than 0.1% of a scale) or to the envelope; the integrand is never
    negative, so neither is the regret.
    """
    center, scale = np.asarray(center, float), np.asarray(scale, float)
    if center.size == 1:
        return np.zeros(1)
    floor, ceiling = _envelope_arrays(floor, ceiling, center.size)
    y = _regret_grid(center, scale, floor, ceiling)
    rows = _chunks(np.arange(center.size), y.size)
    lowest = np.ones(y.size)
    for r in rows:
        lowest *= np.prod(_survival(center[r], scale[r], floor[r], ceiling[r], y), axis=0)
    regret = np.concatenate([np.trapezoid(_survival(center[r], scale[r], floor[r], ceiling[r], y) - lowest[None, :],
                                          y, axis=1) for r in rows])
    return np.maximum(regret, 0.0)


# --- How regret is defined: log-loss grid and survival functions --------------------------------
def _regret_grid(center, scale, floor, ceiling):
    """Log-loss grid: fine between the (censored) centres, sinh-spaced out to the 1e-6 tails, cut to the envelope."""
    center = np.clip(center, floor, ceiling)
    reach = _t2_ppf(1 - 1e-6) * np.max(scale)
    step = np.min(scale)
    offsets = step * np.sinh(np.linspace(0.0, np.arcsinh(reach / step), 2048))
    edges = [floor, np.nextafter(floor, -np.inf), ceiling, np.nextafter(ceiling, np.inf)]  # jumps read exactly
    y = np.unique(np.concatenate([np.min(center) - offsets, np.max(center) + offsets, *edges,
                                  np.linspace(np.min(center), np.max(center), 256)]))
    return y[np.isfinite(y) & (y >= np.min(floor)) & (y <= np.max(ceiling))]


def _survival(center, scale, floor, ceiling, y):
    """``S_i(y)`` of each candidate's censored t log loss on the grid ``y``."""
    sf = _t2_sf((y[None, :] - center[:, None]) / scale[:, None])
    return np.where(y[None, :] < floor[:, None], 1.0, np.where(y[None, :] > ceiling[:, None], 0.0, sf))
# --- end of the regret definition ---------------------------------------------------------------


def _t2_sf(t):
    """Survival function of Student's t with 2 degrees of freedom (closed form).

    ``(r − t) / (2r)`` with ``r = √(2 + t²)``, written as ``1 / (r (r + t))`` for
    t > 0 so the far right tail keeps its precision; scipy's general t costs 10x more
    and this runs on every widget change.
    """
    r = np.sqrt(2.0 + t * t)
    return np.where(t > 0, 1.0 / (r * (r + np.abs(t))), (r - t) / (2.0 * r))


def _t2_ppf(u):
    """Quantile function of Student's t with 2 degrees of freedom (closed form)."""
    u = np.asarray(u, dtype=float)
    return (2.0 * u - 1.0) / np.sqrt(2.0 * u * (1.0 - u))


def _bounds(center, scale, level, floor=-np.inf, ceiling=np.inf):
    """The censored t's central interval at ``level``, in loss units."""
    q = _t2_ppf(0.5 + level / 2)
    with np.errstate(over="ignore"):  # a bound beyond the float range is inf
        return (np.exp(np.clip(center - q * scale, floor, ceiling)),
                np.exp(np.clip(center + q * scale, floor, ceiling)))


def check_level(level):
    """Return `level` as a float in (0, 1), or raise `ConfigError` naming it."""
    if not (isinstance(level, (int, float, np.floating)) and 0 < float(level) < 1):
        raise ConfigError(f"`level` must be between 0 and 1, got {level!r}; e.g. 0.9 for a 90% interval.")
    return float(level)


def _check_method(method):
    name = str(method).strip().lower()
    if name not in PREDICTIVE_METHODS:
        raise ConfigError(f"`method` {method!r} has no predictive distribution; choose from "
                          f"{', '.join(PREDICTIVE_METHODS)}.")
    return name
