"""Fine-tuning scaling laws as estimators.

Three laws of the test loss L as a function of the number of training examples D:
:class:`PowerLaw` (``L = B * D**-beta + E``), :class:`RectifiedLaw` (Lin et al. 2024,
``L = B / (D_l + D**beta) + E``) and :class:`LensLLMLaw` (Zeng et al. 2025, D_l
replaced by the NTK-based term F(Θ, t)). Estimators: settings in ``__init__``, work
in ``fit(D, L)``, results in attributes with a trailing underscore.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.laws``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

from ..errors import ConfigError, FitError
from ..utils.validation import check_choice, check_positive_sizes
from .base import BaseEstimator
from .fitting import PARAM_BOUNDS, LawSpec, fit_batch, law_jacobian, law_log_predict

__all__ = ["PowerLaw", "RectifiedLaw", "LensLLMLaw", "make_law", "LAWS"]

_INTERVALS = ("delta", "bootstrap")


class _Law(BaseEstimator):
    """Shared machinery; subclasses define the pre-learned term and names."""

    name = ""
    _fitted_attribute = "theta_"
    _fit_call = "fit(D, L)"
    _param_names = ("B", "beta", "E")

    def __init__(self, *, loss="huber", huber_delta=0.02, n_starts=3, interval="delta",
                 n_boot=200, random_state=0):
        self.loss = loss
        self.huber_delta = huber_delta
        self.n_starts = n_starts
        self.interval = interval
        self.n_boot = n_boot
        self.random_state = random_state

    def _spec(self, ntk_list=None) -> LawSpec:
        if self.loss not in ("huber", "l2"):
            raise ConfigError(f"`loss` must be 'huber' or 'l2', got {self.loss!r}.")
        if not (isinstance(self.huber_delta, (int, float)) and self.huber_delta > 0):
            raise ConfigError(f"`huber_delta` must be a positive number, got {self.huber_delta!r}.")
        if not (isinstance(self.n_starts, (int, np.integer)) and self.n_starts >= 1):
            raise ConfigError(f"`n_starts` must be a positive integer, got {self.n_starts!r}.")
        check_choice("interval", self.interval, _INTERVALS)
        return LawSpec(pre_learned=self._pre_learned(ntk_list), loss=self.loss, huber_delta=float(self.huber_delta),
                       n_starts=int(self.n_starts))

    def _pre_learned(self, ntk_list) -> str:
        """How D_l enters the engine: "none", "free", "bounded" or "fixed"."""
        raise NotImplementedError

    def _pre_learned_bounds(self, ntk_list):
        """Return (dl_max, dl_fixed) arrays for the engine, or None."""
        return None, None

    # -- fitting --------------------------------------------------------------
    def fit(self, D, L, *, model=None):
        """Fit the law to one curve.

        Parameters
        ----------
        D : array_like
            Training-set sizes, positive. Zero-shot points (D = 0) are not allowed
            here: the laws are defined for D > 0.
        L : array_like
            Test losses, positive and finite, same length as ``D``.
        model : str, optional
            Name used in error messages.

        Returns
        -------
        self

        Raises
        ------
        FitError
            When the fit fails; the message names the model and the reason.
        """
        D, L = _check_curve(D, L)
        self._fit_arrays([D], [L], [model], ntk=None if not hasattr(self, "ntk") else [self.ntk])
        if not self.success_:
            raise FitError(f"{type(self).__name__} could not be fitted to model {model or '<curve>'!r}: "
                           f"{self.reason_}.")
        return self

    def _fit_many(self, sizes, losses, *, names, ntk=None):
        """Fit copies of this law to many curves in one batch; failures are flagged."""
        clones = [type(self)(**self.get_params()) for _ in sizes]
        batch = self._run_batch(sizes, losses, ntk)
        for i, clone in enumerate(clones):
            if ntk is not None and hasattr(clone, "ntk"):
                clone.ntk = ntk[i]
            clone._store(batch, i, sizes[i], losses[i], names[i])
        return clones

    def _fit_arrays(self, sizes, losses, names, ntk=None):
        batch = self._run_batch(sizes, losses, ntk)
        self._store(batch, 0, sizes[0], losses[0], names[0])

    def _run_batch(self, sizes, losses, ntk):
        spec = self._spec(ntk)
        dl_max, dl_fixed = self._pre_learned_bounds(ntk)
        return fit_batch(sizes, losses, spec, dl_max=dl_max, dl_fixed=dl_fixed)

    def _store(self, batch, i, D, L, name):
        self.theta_ = batch.theta[i].copy()
        self.cov_ = batch.cov[i].copy()
        self.dof_ = float(batch.dof[i])
        self.sigma_ = float(batch.sigma[i])
        self.rmse_log_ = float(batch.rmse_log[i])
        self.success_ = bool(batch.success[i])
        self.reason_ = batch.reason[i]
        self.model_ = name
        self.D_ = np.asarray(D, dtype=float).copy()
        self.L_ = np.asarray(L, dtype=float).copy()
        self.log_scale_ = float(batch.log_scale[i])
        log_b, beta, log_dl, log_e = self.theta_
        with np.errstate(over="ignore"):  # B of a loss near 1e308 may not be a float: reported as not finite
            self.B_, self.D_l_, self.E_ = (float(np.exp(v)) for v in (log_b, log_dl, log_e))
        self.beta_ = float(beta)
        self.d_star_, self.d_star_reason_ = self._d_star()
        self.params_ = self._named_params()

    def _d_star(self):
        """Phase-transition size and, when it is not identified, why (None, reason)."""
        # D* solves D**beta = D_l; below it the pre-learned term dominates.
        log_dl = self.theta_[2]
        if not np.isfinite(log_dl) or self.D_l_ <= 0:
            return None, "this law has no pre-learned term"
        if log_dl <= PARAM_BOUNDS["log_Dl"][0] + 1e-6:
            return None, "the pre-learned term fell to its lower bound (degenerate: no pre-power phase seen)"
        log_star = log_dl / self.beta_
        # Plausible: between one example and 1000x the largest fitted size; outside
        # it the value is an artefact of the optimizer, not a measured transition.
        if log_star < 0:
            return None, "D* below one example: no pre-power phase in the fitted sizes"
        if log_star > np.log(1e3 * self.D_.max()):
            return None, f"D* beyond 1000x the largest fitted size ({self.D_.max():g}): not identified"
        return float(np.exp(log_star)), ""

    def _named_params(self) -> dict:
        return {"B": self.B_, "beta": self.beta_, "D_l": self.D_l_, "E": self.E_}

    def reported_params(self):
        """Fitted parameters for display: non-identified ones are None, with the reason.

        Returns
        -------
        (params, missing) : dict, dict
            ``params`` maps every name of ``params_`` (plus ``d_star``) to a finite
            float or None; ``missing`` maps each None to why it is not shown (a
            pre-learned term at its bound is an optimizer artefact such as 1e-99,
            not a measurement).
        """
        self._check_fitted()
        params = {k: (float(v) if np.isfinite(v) else None) for k, v in self.params_.items()}
        missing = {k: "not finite" for k, v in params.items() if v is None}
        if "E" in params and self.theta_[3] - self.log_scale_ <= PARAM_BOUNDS["log_E"][0] + 1e-6:
            params["E"] = None
            missing["E"] = "the asymptote fell to its lower bound (not identified by the fitted sizes)"
        if self.d_star_ is None:
            params["d_star"] = None
            missing["d_star"] = self.d_star_reason_
            # D_l (F) and D* stand or fall together: D* = D_l**(1/beta).
            for name in ("D_l", "F"):
                if name in params:
                    params[name] = None
                    missing[name] = self.d_star_reason_
        else:
            params["d_star"] = self.d_star_
        return params, missing

    # -- using a fitted law ---------------------------------------------------
    def _check_fitted(self):
        self._check_is_fitted()
        if not self.success_:
            raise FitError(f"{type(self).__name__} failed to fit model {self.model_ or '<curve>'!r}: "
                           f"{self.reason_}; it has no prediction.")

    def predict(self, D):
        """Predicted test loss at sizes ``D`` (array_like, positive)."""
        self._check_fitted()
        D = check_positive_sizes(D, "D")
        out = np.exp(law_log_predict(self.theta_, np.atleast_1d(D)[None])[0])
        return out if D.ndim else float(out[0])

    def predict_interval(self, D, level=0.9):
        """Prediction interval of the test loss at sizes ``D``.

        ``interval="delta"`` propagates the Gauss–Newton covariance of the
        parameters through the law in log space and adds the residual variance (a
        new observation, not only the mean), with Student-t quantiles.
        ``interval="bootstrap"`` refits ``n_boot`` residual-bootstrap replicates
        in one batch and takes quantiles of their predictions plus resampled noise.

        Returns
        -------
        (low, high) : tuple of ndarray
            ``(0, inf)`` with a warning when the law has as many free parameters
            as points.
        """
        self._check_fitted()
        if not 0 < level < 1:
            raise ConfigError(f"`level` must be between 0 and 1, got {level!r}; e.g. 0.9 for a 90% interval.")
        D = np.atleast_1d(check_positive_sizes(D, "D"))
        if self.dof_ <= 0:
            # As many free parameters as points: the law passes through them and
            # says nothing about its own error, so the interval is unbounded.
            warnings.warn(
                f"{type(self).__name__} for {self.model_ or 'this curve'!r} has {self.D_.size} points for "
                f"{self.D_.size - int(self.dof_)} free parameters: its prediction interval is unbounded; "
                "measure more sizes for a finite one.", UserWarning, stacklevel=2)
            return np.zeros(D.shape), np.full(D.shape, np.inf)
        if self.interval == "bootstrap":
            low, high = self._bootstrap_interval(D, level)
        else:
            low, high = self._delta_interval(D, level)
        return low, high

    def _delta_interval(self, D, level):
        center, g = law_jacobian(self.theta_, D)
        # Parameters pinned at a bound (non-finite) carry no uncertainty.
        g = np.where(np.isfinite(self.theta_)[None, :], g, 0.0)
        var = np.einsum("pi,ij,pj->p", g, np.nan_to_num(self.cov_), g) + self.sigma_ ** 2
        q = stats.t.ppf(0.5 + level / 2, self.dof_)
        half = q * np.sqrt(np.maximum(var, 0.0))
        return np.exp(center - half), np.exp(center + half)

    def _bootstrap_interval(self, D, level):
        rng = np.random.default_rng(self.random_state)
        fitted = law_log_predict(self.theta_, self.D_[None])[0]
        resid = np.log(self.L_) - fitted
        draws = rng.choice(resid, size=(self.n_boot, resid.size), replace=True)
        boot_L = np.exp(fitted[None, :] + draws)
        sizes = [self.D_] * self.n_boot
        ntk = None if not hasattr(self, "ntk") else [self.ntk] * self.n_boot
        batch = self._run_batch(sizes, list(boot_L), ntk)
        preds = law_log_predict(batch.theta[batch.success], D[None, :])
        noise = rng.choice(resid, size=preds.shape, replace=True)
        alpha = (1 - level) / 2
        low, high = np.quantile(preds + noise, [alpha, 1 - alpha], axis=0)
        return np.exp(low), np.exp(high)

    def phase(self, D):
        """Phase label of each size: ``"pre-power"`` below D*, ``"power"`` above."""
        self._check_fitted()
        D = np.atleast_1d(check_positive_sizes(D, "D"))
        if self.d_star_ is None:
            return np.full(D.shape, "power", dtype=object)
        return np.where(D < self.d_star_, "pre-power", "power").astype(object)


class PowerLaw(_Law):
    """Vanilla power law ``L = B * D**-beta + E`` (no pre-power phase).

    Parameters
    ----------
    loss : {"huber", "l2"}, default "huber"
        Loss on log residuals; Huber is robust to a stray measurement.
    huber_delta : float, default 0.02
        Log residual beyond which the Huber loss is linear (2% of the loss).
    n_starts : int, default 3
        Grid cells polished by Levenberg–Marquardt.
    interval : {"delta", "bootstrap"}, default "delta"
        How :meth:`predict_interval` is computed.
    n_boot : int, default 200
        Bootstrap replicates (``interval="bootstrap"``).
    random_state : int, default 0
        Seed of the bootstrap.

    Attributes
    ----------
    params_ : dict
        Fitted ``B``, ``beta``, ``E``.
    E_, beta_, B_ : float
    d_star_ : None
        A power law has no phase transition.
    rmse_log_ : float
        RMSE of the log loss on the fitted points.
    """

    name = "vanilla"

    def _pre_learned(self, ntk_list):
        return "none"

    def _named_params(self):
        return {"B": self.B_, "beta": self.beta_, "E": self.E_}


class RectifiedLaw(_Law):
    """Rectified scaling law of Lin et al. (2024): ``L = B / (D_l + D**beta) + E``.

    D_l is the pre-learned data size: while D**beta ≪ D_l the curve is flat
    (pre-power phase); beyond D* = D_l**(1/beta) it is a power law.

    Parameters
    ----------
    See :class:`PowerLaw`.

    Attributes
    ----------
    params_ : dict
        Fitted ``B``, ``beta``, ``D_l``, ``E``.
    d_star_ : float or None
        Phase-transition size (None when D_l = 0).
    """

    name = "rectified"

    def _pre_learned(self, ntk_list):
        return "free"


class LensLLMLaw(_Law):
    """LensLLM law of Zeng et al. (2025): ``L = B / (F(Θ, t) + D**beta) + E``.

    Parameters
    ----------
    ntk : NTKFeatures or dict, optional
        NTK features of the model (:func:`lensllm_nb.collection.ntk.compute_ntk`, or its
        ``to_dict()``). When given, F(Θ, t) = ‖exp(−ηΘt)(f0 − y)‖² is computed from
        them: with ``t`` fixed F is a constant, with ``t=None`` t is fitted
        (0 ≤ F ≤ F(Θ, 0)). Without NTK features F is a fitted non-negative term.
    t : float, optional
        Fixed NTK training time; None fits it.
    eta : float, default 1.0
        Learning rate η in F(Θ, t).
    loss, huber_delta, n_starts, interval, n_boot, random_state
        See :class:`PowerLaw`.

    Attributes
    ----------
    params_ : dict
        Fitted ``B``, ``beta``, ``F``, ``E`` (and ``t`` when NTK features are used).
    d_star_ : float or None
        Size where D**beta equals F.
    """

    name = "lensllm"

    def __init__(self, *, ntk=None, t=None, eta=1.0, loss="huber", huber_delta=0.02, n_starts=3,
                 interval="delta", n_boot=200, random_state=0):
        super().__init__(loss=loss, huber_delta=huber_delta, n_starts=n_starts, interval=interval,
                         n_boot=n_boot, random_state=random_state)
        self.ntk = ntk
        self.t = t
        self.eta = eta

    def _pre_learned(self, ntk_list):
        if ntk_list is None or all(f is None for f in ntk_list):
            return "free"
        return "bounded" if self.t is None else "fixed"

    def _features(self, ntk):
        if isinstance(ntk, dict):
            from .ntk_features import NTKFeatures
            return NTKFeatures.from_dict(ntk)
        return ntk

    def _pre_learned_bounds(self, ntk_list):
        if self.t is not None and not (isinstance(self.t, (int, float)) and self.t >= 0):
            raise ConfigError(f"`t` must be a non-negative number or None (fitted), got {self.t!r}.")
        if not (isinstance(self.eta, (int, float)) and self.eta > 0):
            raise ConfigError(f"`eta` must be a positive number, got {self.eta!r}.")
        if ntk_list is None or all(f is None for f in ntk_list):
            return None, None
        if any(f is None for f in ntk_list):
            raise ConfigError("`ntk` features are given for some models but not all; pass them for every "
                              "model or for none.")
        feats = [self._features(f) for f in ntk_list]
        if self.t is None:
            # F decreases from F(0) to 0 as t grows, so fitting t is fitting
            # 0 ≤ F ≤ F(0); t is recovered from F afterwards.
            return np.array([max(float(f.F(0.0, self.eta)), 1e-12) for f in feats]), None
        return None, np.array([max(float(f.F(float(self.t), self.eta)), 1e-12) for f in feats])

    def _named_params(self):
        params = {"B": self.B_, "beta": self.beta_, "F": self.D_l_, "E": self.E_}
        if self.ntk is not None:
            params["t"] = float(self.t) if self.t is not None else self._solve_t(self.D_l_)
        return params

    def _solve_t(self, value):
        """Invert the decreasing F(t) = value for t (root of F(e^s) − value in s = log t)."""
        feats = self._features(self.ntk)
        gap = lambda s: float(feats.F(np.exp(s), self.eta)) - value  # noqa: E731
        lo, hi = -30.0, 30.0
        if gap(lo) <= 0:
            # The value is F(0) or above (the fit's upper bound, up to rounding):
            # t is zero to within e^-30, and brentq would find no sign change.
            return 0.0
        if gap(hi) > 0:
            # F has not fallen to the value even at t = e^30: t is not identified.
            return float("inf")
        return float(np.exp(optimize.brentq(gap, lo, hi, xtol=1e-12)))


LAWS = {"vanilla": PowerLaw, "rectified": RectifiedLaw, "lensllm": LensLLMLaw}


def make_law(name, **kwargs):
    """Return a law estimator by name: ``"vanilla"``, ``"rectified"`` or ``"lensllm"``."""
    try:
        cls = LAWS[str(name).lower()]
    except KeyError:
        raise ConfigError(f"`law` must be one of {sorted(LAWS)}, got {name!r}.") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad setting for law {name!r}: {exc}.") from None


def _check_curve(D, L):
    D = np.atleast_1d(check_positive_sizes(D, "D"))
    try:
        L = np.atleast_1d(np.asarray(L, dtype=float))
    except (TypeError, ValueError):
        raise ConfigError(f"`L` must be numbers, got {L!r}.") from None
    if D.ndim != 1 or L.shape != D.shape:
        raise ConfigError(f"`D` and `L` must be 1-D and the same length, got shapes {D.shape} and {L.shape}.")
    bad = L[~np.isfinite(L) | (L <= 0)]
    if bad.size:
        raise ConfigError(f"`L` must be positive, finite losses, got {bad[:5].tolist()}.")
    if np.unique(D).size < 3:
        raise ConfigError(f"`D` needs at least 3 distinct sizes to fit a law, got {np.unique(D).tolist()}.")
    return D, L
