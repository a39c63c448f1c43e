"""Model selectors: rank candidates by their predicted full-data fine-tuning loss.

Every selector is an estimator: settings in ``__init__``, ``fit(table, max_train=,
target=)`` reads the visible part of each candidate's curve (positive sizes ≤
``max_train`` plus the zero-shot loss and parameter count when the table has them)
and sets

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.selection``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .base import BaseEstimator
from .curve_envelope import log_envelope
from .curves import rising_reason
from .visible import cut_key, visible_curves
from .extrapolate import ats_transition, line_fit, robust_curvature_predict
from .laws import make_law
from .metrics import cost_fraction, pearcorr, relacc, spearman, top1_regret
from .ntk_law import LensLLMStepsLaw
from .pair_backtest import decide_pick
from .statespace import fit_slope_drift

__all__ = [
    "DEFAULT_METHOD",
    "LENSLLM_VARIANTS",
    "LENSLLM_VARIANT",
    "LENSLLM_NOTES",
    "ZeroShotSelector",
    "SubTuningSelector",
    "ModelSizeSelector",
    "LawFitSelector",
    "AtSSelector",
    "LensLLMSelector",
    "RobustCurvatureSelector",
    "SlopeDriftSelector",
    "CurvatureDriftSelector",
    "BacktestedPickSelector",
    "SELECTORS",
    "make_selector",
    "ats_line_prediction",
]

# The method every user-facing prediction uses unless told otherwise (one place).
DEFAULT_METHOD = "backtested_pick"
# The two variants of the LensLLM law and the one ``lensllm`` runs (docs/LENSLLM_LAW.md).
LENSLLM_VARIANTS = ("steps", "fitted_t")
LENSLLM_VARIANT = "steps"
# What the LensLLM term is, by what ran (LensLLMSelector.variant_): notebooks and README say it.
LENSLLM_NOTES = {
    "steps": ("t from the runs: F(Θ, η·steps) from the NTK features, varying along each curve; B, β, E fitted, "
              "the zero-shot loss as the point D = 0 where measured"),
    "fitted_t": "t fitted: the rectified law with D_l bounded by F(Θ, 0)",
    "rectified": "no NTK features: this is the rectified law",
}


class _Selector(BaseEstimator):
    """Shared fit logic; subclasses implement ``_predict(visible)``."""

    name = ""
    _fitted_attribute = "predictions_"
    higher_is_better = False
    _cost_sizes = "all"
    _min_points = 1

    def fit(self, table, *, max_train, target, dataset=None):
        """Predict every candidate's loss at ``target`` from sizes ≤ ``max_train``.

        Parameters
        ----------
        table : pandas.DataFrame
            Tidy curves table; not modified.
        max_train : int
            Largest visible training size.
        target : int
            Size whose loss is predicted (usually the full training set).
        dataset : str, optional
            Needed when the table holds several datasets.

        Returns
        -------
        self
        """
        visible = visible_curves(table, max_train=max_train, target=target, dataset=dataset)
        rows = table if dataset is None else table[table["dataset"] == dataset]
        cost = cost_fraction(rows, max_train=max_train, target=target, sizes=self._cost_sizes)
        return self.fit_visible(visible, cost_fraction=cost)

    def fit_visible(self, visible, *, cost_fraction=float("nan")):
        """Fit on curves already cut by :func:`visible_curves` (shared across methods).

        Parameters
        ----------
        visible : VisibleCurves
        cost_fraction : float
            FLOPs of the visible runs relative to full data, stored as
            ``cost_fraction_``.

        Returns
        -------
        self
        """
        short = [m for m, s in zip(visible.models, visible.sizes) if s.size < self._min_points]
        if short:
            largest = max((s[-1] for s in visible.sizes if s.size), default=0)
            seen = f"largest {largest:g}" if largest else "no measured size is that small"
            raise ConfigError(
                f"the visible sizes ({seen}) leave fewer than {self._min_points} point(s) for "
                f"{short[:3]}; raise `max_train` or measure more small sizes."
            )
        pred, failed = self._predict(visible)
        pred = np.asarray(pred, dtype=float)
        if not np.all(np.isfinite(pred)):
            bad = [m for m, p in zip(visible.models, pred) if not np.isfinite(p)]
            raise ConfigError(f"{self.name} produced no finite prediction for {bad[:3]}.")
        self.predictions_ = pd.Series(pred, index=pd.Index(visible.models, name="model"), name="predicted")
        order = np.argsort(-pred if self.higher_is_better else pred, kind="stable")
        self.ranking_ = [visible.models[i] for i in order]
        self.chosen_ = self.ranking_[0]
        self.failed_ = list(failed)
        if failed:
            warnings.warn(f"{self.name}: no law fitted for {failed[:5]} (the fit failed, or the visible loss "
                          "rises with size); their last visible loss is used.", UserWarning, stacklevel=2)
        self.cost_fraction_ = float(cost_fraction)
        self.max_train_ = int(max((s[-1] for s in visible.sizes if s.size), default=0))
        self.target_ = int(visible.target)
        return self

    def _predict(self, visible):
        raise NotImplementedError


class ZeroShotSelector(_Selector):
    """Rank by the zero-shot loss (no fine-tuning)."""

    name = "zeroshot"
    _cost_sizes = "none"
    _min_points = 0

    def __init__(self):
        pass

    def _predict(self, visible):
        if np.isnan(visible.zero_shot).any():
            missing = [m for m, z in zip(visible.models, visible.zero_shot) if np.isnan(z)]
            raise ConfigError(f"zeroshot needs the zero-shot loss (n_train = 0) of every model; missing for "
                              f"{missing[:3]}.")
        return visible.zero_shot, []


class SubTuningSelector(_Selector):
    """Rank by the loss after fine-tuning on the largest visible subset."""

    name = "subtuning"
    _cost_sizes = "largest"

    def __init__(self):
        pass

    def _predict(self, visible):
        return np.array([l[-1] for l in visible.losses]), []


class ModelSizeSelector(_Selector):
    """Rank by parameter count, larger first; the score is log(params) as published."""

    name = "modelsize"
    higher_is_better = True
    _cost_sizes = "none"
    _min_points = 0

    def __init__(self):
        pass

    def _predict(self, visible):
        if np.isnan(visible.params).any():
            raise ConfigError("modelsize needs a `params` column with every model's parameter count.")
        return np.log(visible.params), []


class LawFitSelector(_Selector):
    """Fit a scaling law to each visible curve and extrapolate it to the target.

    Parameters
    ----------
    law : {"vanilla", "rectified", "lensllm"}
        Which law (see :mod:`lensllm_nb.analysis.laws`).
    law_params : dict, optional
        Settings passed to the law.
    """

    _min_points = 3

    def __init__(self, law="rectified", law_params=None):
        self.law = law
        self.law_params = law_params

    @property
    def name(self):
        return self.law

    def _ntk_list(self, models):
        return None

    def _predict(self, visible):
        law = make_law(self.law, **(self.law_params or {}))
        fitted = law._fit_many(visible.sizes, visible.losses, names=visible.models,
                               ntk=self._ntk_list(visible.models))
        return self._law_predictions(visible, fitted)

    def _law_predictions(self, visible, fitted):
        """Each fitted law's prediction at the target, with the two fallbacks.

        A failed fit (or None: a curve the selector did not fit) falls back to the
        last visible loss (``failed_``). A fit with
        no residual degree of freedom (as many free parameters as points)
        passes through every point and its extrapolation is not identified: a
        4-parameter law through 4 points bent at the last one fell from 2.5 to 0.9
        over 8x the data, and its interval spanned 0.007-122. Such a fit is
        replaced by the Accept-then-Stop line through the same points
        (``interpolating_``), which has residual freedom from 3 points on.
        """
        pred, failed, self.interpolating_ = [], [], []
        for model, f, sizes, losses in zip(visible.models, fitted, visible.sizes, visible.losses):
            if f is None or not f.success_:
                pred.append(losses[-1])
                failed.append(model)
            elif f.dof_ <= 0:
                pred.append(ats_line_prediction(sizes, losses, visible.target))
                self.interpolating_.append(model)
            else:
                pred.append(f.predict(visible.target))
        if self.interpolating_:
            warnings.warn(f"{self.name}: the law interpolates the visible points of {self.interpolating_[:5]} "
                          "(as many parameters as points), so its extrapolation is not identified; their "
                          "Accept-then-Stop line is used.", UserWarning, stacklevel=4)
        return np.array(pred), failed


class AtSSelector(_Selector):
    """Accept-then-Stop (Lin et al. 2024).

    Walking back from the largest visible size, a log-log line is fitted to the
    last points; the next smaller point is accepted into the power phase while
    its standardized residual stays ≤ ``delta`` and the walk stops at the first
    point above it. The line through the accepted points is extrapolated.

    Parameters
    ----------
    k : int, default 3
        Points in the first fit.
    delta : float, default 5
        Standardized-residual threshold of the phase transition.
    """

    name = "ats"
    _min_points = 2

    def __init__(self, k=3, delta=5.0):
        self.k = k
        self.delta = delta

    def _predict(self, visible):
        return np.array([ats_line_prediction(s, l, visible.target, k=self.k, delta=self.delta)
                         for s, l in zip(visible.sizes, visible.losses)]), []


def ats_line_prediction(sizes, losses, target, *, k=3, delta=5.0):
    """Accept-then-Stop: the log-log line through the power-phase window, evaluated at `target`."""
    x, y = np.log(sizes), np.log(losses)
    start = ats_transition(x, y, k=k, delta=delta) + 1
    slope, intercept = line_fit(x[start:], y[start:])
    return float(np.exp(intercept + slope * np.log(target)))


class RobustCurvatureSelector(_Selector):
    """AtS power-phase window, Theil–Sen line and curvature pooled over candidates.

    The project's own extrapolator (see :mod:`lensllm_nb.analysis.extrapolate`); it was
    called ``lensllm`` before, which it is not.

    Parameters
    ----------
    significance : float, default 1.96
        |t| of the pooled curvature above which curves are bent (the 5% level).
    """

    name = "robust_curvature"
    _min_points = 3

    def __init__(self, significance=1.96):
        self.significance = significance

    def _predict(self, visible):
        if not (isinstance(self.significance, (int, float)) and self.significance > 0):
            raise ConfigError(f"`significance` must be a positive number, got {self.significance!r}; "
                              "1.96 is the 5% level.")
        pred, self.rate_ = robust_curvature_predict(visible, significance=self.significance)
        return pred, []


class SlopeDriftSelector(_Selector):
    """State-space slope-drift extrapolator (see :mod:`lensllm_nb.analysis.statespace`).

    A local linear trend on log loss over log size whose slope drifts, run on each
    candidate's visible points; the slope growth ρ and drift q are shared
    by the candidates and fitted by maximum likelihood, each candidate's noise is
    profiled.

    Parameters
    ----------
    window : {"all", "ats"}, default "all"
        Filter every visible point (the pre-power bend is slope growth the
        filter sees) or only the Accept-then-Stop power-phase window.
    """

    name = "slope_drift"
    _min_points = 3

    def __init__(self, window="all"):
        self.window = window

    def _predict(self, visible):
        mean, _ = self.forecast(visible)
        return np.exp(mean), []

    def forecast(self, visible):
        """Mean and Kalman variance of every candidate's log loss at the target."""
        if self.window not in ("ats", "all"):
            raise ConfigError(f"`window` must be 'ats' or 'all', got {self.window!r}.")
        xs = [np.log(s) for s in visible.sizes]
        ys = [np.log(l) for l in visible.losses]
        if self.window == "ats":
            # The filter needs 3 points; a shorter window keeps its last 3.
            starts = [min(ats_transition(x, y) + 1, x.size - 3) for x, y in zip(xs, ys)]
            xs = [x[w:] for x, w in zip(xs, starts)]
            ys = [y[w:] for y, w in zip(ys, starts)]
        self.fit_ = fit_slope_drift(xs, ys)
        return self.fit_.forecast(np.log(visible.target))


class CurvatureDriftSelector(_Selector):
    """``robust_curvature``, averaged with ``slope_drift`` where the curves steepen.

    Both extrapolators see steepening; the straight-line part of
    ``robust_curvature`` is the safer pick where there is none. So the pooled
    curvature test of ``robust_curvature`` (|t| > ``significance``) decides: when
    the candidates share a significant steepening the prediction is the
    equal-weight average, in log space, of ``robust_curvature`` and
    ``slope_drift``; otherwise ``robust_curvature`` alone. No weight or threshold
    is fitted: equal weights and the 5% level.

    Parameters
    ----------
    significance : float, default 1.96
        |t| of the pooled curvature above which the slope-drift forecast joins.
    """

    name = "curvature_drift"
    _min_points = 3

    def __init__(self, significance=1.96):
        self.significance = significance

    def _predict(self, visible):
        curved = RobustCurvatureSelector(significance=self.significance).fit_visible(visible)
        self.rate_ = curved.rate_
        # The fitted parts, for the prediction engine to reuse.
        self.components_ = {"robust_curvature": curved}
        if self.rate_ == 0.0:
            return curved.predictions_.to_numpy(), []
        drift = SlopeDriftSelector().fit_visible(visible)
        self.components_["slope_drift"] = drift
        return np.exp(0.5 * (np.log(curved.predictions_.to_numpy()) + np.log(drift.predictions_.to_numpy()))), []


class BacktestedPickSelector(CurvatureDriftSelector):
    """``curvature_drift``'s predictions; its top is picked only where a backtest backs it.

    The ranking shown (``predictions_``) is ``curvature_drift``'s. The pick
    (``chosen_``) is the observed leader A (lowest loss at the largest visible
    size) unless the top of that ranking B differs and, inside the visible sizes,
    ``curvature_drift`` refitted at earlier origins forecast the A − B log gap
    better than persistence did, by more than its backtested error, and persistence
    did not forecast most of A's gaps to every candidate more closely
    (:func:`~lensllm_nb.analysis.pair_backtest.decide_pick`). ``chosen_reason_``
    says why in one sentence; ``decision_`` holds the errors;
    ``backtest_fits_`` maps each backtest cut, ``(target, points per candidate)``, to
    its fitted :class:`CurvatureDriftSelector` (the engine's self-calibration reuses
    them instead of fitting the same cuts again).

    Parameters
    ----------
    significance : float, default 1.96
        As in :class:`CurvatureDriftSelector`.
    origins : {"half", "all"}, default "half"
        Backtest origins (see :func:`~lensllm_nb.analysis.pair_backtest.decide_pick`).
    no_origin : {"leader", "predicted"}, default "leader"
        The pick when no backtest origin exists.
    margin_test : bool, default True
        Depart only when the predicted margin exceeds the backtested error
        grown to the target's horizon.
    short_lines : bool, default True
        Without a 3-point origin, backtest straight lines from 2-point origins.
    departure_level : float, optional
        The margin test's form (see :func:`~lensllm_nb.analysis.pair_backtest.decide_pick`).
    noise_margin : bool, default False
        The margin must also clear both candidates' noise floors (study NP1).
    envelope : bool, default False
        Read every ``curvature_drift`` prediction (the shown ones and each backtest
        refit's) clipped to the learning-curve envelope of its curves (study Q1).
    pair_pool : {"veto", None, "mean", "share"}, default "veto"
        The backtest of the leader's gap to every candidate: by default a departure
        is vetoed where persistence forecast most of those gaps more closely than
        the extrapolation (study PP3; the other forms are studies PP1 and PP2, None
        turns it off; :func:`~lensllm_nb.analysis.pair_backtest.decide_pick`).
    """

    name = "backtested_pick"

    def __init__(self, significance=1.96, origins="half", no_origin="leader", margin_test=True,
                 short_lines=True, departure_level=None, noise_margin=False, envelope=False, pair_pool="veto"):
        self.significance = significance
        self.origins = origins
        self.no_origin = no_origin
        self.margin_test = margin_test
        self.short_lines = short_lines
        self.departure_level = departure_level
        self.noise_margin = noise_margin
        self.envelope = envelope
        self.pair_pool = pair_pool

    def fit_visible(self, visible, *, cost_fraction=float("nan")):
        """As :meth:`_Selector.fit_visible`, then the pick and its reason; the chosen model leads ``ranking_``."""
        super().fit_visible(visible, cost_fraction=cost_fraction)
        if self.envelope:
            clipped = np.exp(np.clip(np.log(self.predictions_.to_numpy()), *log_envelope(visible)))
            self.predictions_ = pd.Series(clipped, index=self.predictions_.index, name="predicted")
            self.ranking_ = list(self.predictions_.sort_values(kind="stable").index)

        self.backtest_fits_ = {}

        def refit(curves):
            fit = CurvatureDriftSelector(significance=self.significance).fit_visible(curves)
            self.backtest_fits_[cut_key(curves)] = fit
            log_pred = np.log(fit.predictions_.to_numpy())
            return np.clip(log_pred, *log_envelope(curves)) if self.envelope else log_pred

        self.decision_ = decide_pick(visible, np.log(self.predictions_.to_numpy()), refit,
                                     origins=self.origins, no_origin=self.no_origin,
                                     margin_test=self.margin_test, short_lines=self.short_lines,
                                     departure_level=self.departure_level, noise_margin=self.noise_margin,
                                     pair_pool=self.pair_pool)
        self.chosen_ = self.decision_.chosen
        self.chosen_reason_ = self.decision_.reason
        self.ranking_ = [self.chosen_] + [m for m in self.ranking_ if m != self.chosen_]
        return self


class LensLLMSelector(LawFitSelector):
    """The method of the LensLLM paper (Zeng et al. 2025): its law fitted per candidate.

    ``L = B / (F(Θ, t) + D**β) + E``, ranked by the law's prediction at the target,
    in one of two variants (``docs/LENSLLM_LAW.md``):

    * ``"steps"`` — t from the runs: F(Θ, η t(D)) with each run's optimizer steps
      and learning rate, so F varies along the curve; B, β, E fitted
      (:class:`~lensllm_nb.analysis.ntk_law.LensLLMStepsLaw`). Needs NTK features and a
      ``steps`` column; without them it is the ``"fitted_t"`` variant.
    * ``"fitted_t"`` — t fitted: the rectified law with D_l bounded by F(Θ, 0)
      (:class:`~lensllm_nb.analysis.laws.LensLLMLaw`). Without NTK features it is the
      rectified law.

    Parameters
    ----------
    ntk : dict, optional
        Model name -> NTK features (:class:`~lensllm_nb.analysis.ntk_features.NTKFeatures` or its
        ``to_dict()``), for every candidate or for none; default the features
        the table carries (``VisibleCurves.ntk``).
    law_params : dict, optional
        Other settings of the law of the variant.
    variant : {"steps", "fitted_t"}, default :data:`LENSLLM_VARIANT`
    zero_shot_anchor : bool, default True
        ``"steps"`` only: where a candidate has a zero-shot loss, fit it as the
        law's point D = 0, L(0) = B / F(Θ, 0) + E (study Z, ``docs/LENSLLM_LAW.md``);
        with 3 visible sizes this is what identifies the law.

    Attributes
    ----------
    variant_ : str
        What ran: ``"steps"``, ``"fitted_t"`` or ``"rectified"`` (no NTK
        features: the rectified law).
    """

    def __init__(self, ntk=None, law_params=None, variant=None, zero_shot_anchor=True):
        self.ntk = ntk
        self.law_params = law_params
        self.variant = variant
        self.zero_shot_anchor = zero_shot_anchor

    @property
    def law(self):
        return "lensllm"

    def _features(self, visible):
        if self.ntk is None:
            return visible.ntk
        if not isinstance(self.ntk, dict):
            raise ConfigError(f"`ntk` must be a dict model -> NTK features, got {type(self.ntk).__name__}.")
        return self.ntk

    def _ntk_list(self, models):
        return None if self._ntk is None else [self._ntk.get(m) for m in models]

    def _predict(self, visible):
        variant = LENSLLM_VARIANT if self.variant is None else self.variant
        if variant not in LENSLLM_VARIANTS:
            raise ConfigError(f"`variant` must be one of {LENSLLM_VARIANTS}, got {self.variant!r}.")
        self._ntk = self._features(visible)
        complete = self._ntk is not None and all(self._ntk.get(m) is not None for m in visible.models)
        if variant == "steps" and complete and visible.steps is not None:
            self.variant_ = "steps"
            return self._predict_steps(visible)
        self.variant_ = "fitted_t" if complete else "rectified"
        return super()._predict(visible)

    def _predict_steps(self, visible):
        fitted = []
        for i, model in enumerate(visible.models):
            if rising_reason(visible.sizes[i], visible.losses[i]):
                # Outside every law's domain here (as in fit_curves): the shrinking F would fit the
                # rise and extrapolate a fall no visible point is in (docs/LENSLLM_LAW.md, study LZ1).
                fitted.append(None)
                continue
            lr = None if visible.lr is None else float(visible.lr[i])
            # On 3 points B, β, E interpolate (dof_ 0, unless the zero-shot anchor adds a point):
            # _law_predictions uses the AtS line there.
            zero = float(visible.zero_shot[i]) if self.zero_shot_anchor else np.nan
            law = LensLLMStepsLaw(ntk=self._ntk[model], **(self.law_params or {}))
            fitted.append(law.fit(visible.sizes[i], visible.losses[i], visible.steps[i], lr=lr, model=model,
                                  zero_shot=zero if np.isfinite(zero) else None))
        return self._law_predictions(visible, fitted)


SELECTORS = {
    "zeroshot": ZeroShotSelector,
    "subtuning": SubTuningSelector,
    "modelsize": ModelSizeSelector,
    "vanilla": lambda **kw: LawFitSelector(law="vanilla", **kw),
    "rectified": lambda **kw: LawFitSelector(law="rectified", **kw),
    "ats": AtSSelector,
    "lensllm": LensLLMSelector,
    "robust_curvature": RobustCurvatureSelector,
    "slope_drift": SlopeDriftSelector,
    "curvature_drift": CurvatureDriftSelector,
    "backtested_pick": BacktestedPickSelector,
}


def make_selector(name, **kwargs):
    """Return a selector by its lowercase name (see :data:`SELECTORS`)."""
    try:
        factory = SELECTORS[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(SELECTORS)}.") from None
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad setting for method {name!r}: {exc}.") from None
