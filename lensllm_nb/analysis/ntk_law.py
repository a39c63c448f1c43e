"""The LensLLM law with the NTK time taken from the runs: F varies along the curve.

``L(D) = B / (F(Θ, η·t(D)) + D**β) + E`` with F(Θ, s) = ‖exp(−Θ s)(f0 − y)‖²
from the model's NTK features (:class:`~lensllm_nb.analysis.ntk_features.NTKFeatures`),
η the runs' learning rate and t(D) the optimizer steps of the run on D examples.
Only B, β and E are fitted: the pre-learned term is no free parameter, it shrinks
as a run trains longer; a zero-shot loss is the law's point D = 0, B / F(Θ, 0) + E.
For a size without a run (the target), t(D) comes from a log-log line through the
fitted runs' (D, steps) (exact for a fixed number of epochs). Formulas and the
other variant (t fitted): ``docs/LENSLLM_LAW.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from ..errors import ConfigError, FitError, NotFittedError
from .ntk_features import NTKFeatures

__all__ = ["LensLLMStepsLaw", "DEFAULT_ETA"]

# η of the authors' released code, used when the runs' learning rate is unknown.
DEFAULT_ETA = 0.01
_BETAS = np.geomspace(0.02, 1.5, 40)
_BETA_BOUNDS = (0.01, 2.0)
_E_FLOOR, _E_CEILING = 1e-8, 0.999


class LensLLMStepsLaw:
    """LensLLM law, t from the runs: ``L = B / (F(Θ, η t(D)) + D**β) + E``.

    Parameters
    ----------
    ntk : NTKFeatures or dict
        NTK features of the pretrained model (or their ``to_dict()``).
    eta : float, optional
        η in F; None takes the learning rate passed to :meth:`fit` (the runs'),
        else :data:`DEFAULT_ETA`.
    huber_delta : float, default 0.02
        Log residual beyond which the loss on residuals is linear.

    Attributes
    ----------
    params_ : dict
        Fitted ``B``, ``beta``, ``E``.
    F_ : ndarray
        The pre-learned term at each fitted point.
    rmse_log_ : float
        RMSE of log loss on the fitted positive sizes.
    dof_ : int
        Residual degrees of freedom: points (the zero-shot one included) minus the 3
        free parameters (0 on 3 points without a zero-shot loss: the law interpolates
        and selectors use the AtS line instead).
    steps_coef_ : tuple
        (intercept, slope) of log steps on log D, for sizes without a run.
    d_star_ : float or None
        Size where D**β equals F(Θ, η t(D)); None when outside 1 … 1000 × the
        largest fitted size.
    success_ : bool
    reason_ : str
    """

    name = "lensllm_steps"

    def __init__(self, *, ntk=None, eta=None, huber_delta=0.02):
        self.ntk = ntk
        self.eta = eta
        self.huber_delta = huber_delta

    def fit(self, D, L, steps, *, lr=None, model=None, zero_shot=None):
        """Fit B, β, E to one curve whose runs took `steps` optimizer steps.

        Parameters
        ----------
        D, L, steps : array_like
            Sizes (> 0), test losses (> 0) and optimizer steps (≥ 0) of each run.
        lr : float, optional
            The runs' learning rate (η when ``eta`` is None).
        model : str, optional
            Name used in messages.
        zero_shot : float, optional
            The model's loss before fine-tuning: fitted as the law's point D = 0,
            L(0) = B / F(Θ, 0) + E (study Z in ``docs/LENSLLM_LAW.md``); counted in
            ``dof_``, not in ``rmse_log_``.

        Returns
        -------
        self
        """
        D, L, steps = _check_curve(D, L, steps)
        self.features_ = _features(self.ntk)
        self.eta_ = self._eta(lr)
        self.model_ = model
        self.D_, self.L_, self.steps_ = D, L, steps
        self.steps_coef_ = _steps_line(D, steps)
        self.F_ = self.features_.F(steps, self.eta_)
        log_d, y, F = _with_zero_shot(np.log(D), np.log(L), self.F_, self.features_, zero_shot)
        theta, cost = _fit_theta(log_d, y, F, self.huber_delta)
        self.success_ = bool(np.all(np.isfinite(theta)) and np.isfinite(cost))
        self.reason_ = "" if self.success_ else "no β gave a positive amplitude B; the curve may be rising or flat"
        self.theta_ = theta
        self.dof_ = int(y.size - 3)
        if self.success_:
            resid = _log_predict(theta, np.log(D), self.F_) - np.log(L)
            self.rmse_log_ = float(np.sqrt(np.mean(resid ** 2)))
            self.params_ = {"B": float(np.exp(theta[0])), "beta": float(theta[1]), "E": float(np.exp(theta[2]))}
            self.d_star_ = self._d_star()
        return self

    def steps_at(self, D):
        """Optimizer steps of a run on `D` examples, from the fitted runs' log-log line."""
        self._check_fitted(need_success=False)
        a, b = self.steps_coef_
        return np.exp(a + b * np.log(np.asarray(D, dtype=float)))

    def predict(self, D, steps=None):
        """Predicted test loss at sizes `D`; `steps` (the runs' steps) default to :meth:`steps_at`."""
        self._check_fitted()
        D = np.atleast_1d(np.asarray(D, dtype=float))
        if not np.all(np.isfinite(D) & (D > 0)):
            raise ConfigError(f"`D` must be positive sizes, got {D[:5].tolist()}.")
        s = self.steps_at(D) if steps is None else np.broadcast_to(np.asarray(steps, dtype=float), D.shape)
        out = np.exp(_log_predict(self.theta_, np.log(D), self.features_.F(s, self.eta_)))
        return out if out.size > 1 else float(out[0])

    def _eta(self, lr):
        value = self.eta if self.eta is not None else (lr if lr is not None else DEFAULT_ETA)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not value > 0:
            raise ConfigError(f"`eta` (or the runs' `lr`) must be a positive number, got {value!r}.")
        return float(value)

    def _d_star(self):
        beta = self.theta_[1]
        gap = lambda x: beta * x - np.log(max(self.features_.F(float(self.steps_at(np.exp(x))), self.eta_),  # noqa: E731
                                              1e-300))
        lo, hi = 0.0, np.log(1e3 * self.D_.max())
        if gap(lo) >= 0 or gap(hi) <= 0:
            return None
        return float(np.exp(optimize.brentq(gap, lo, hi, xtol=1e-10)))

    def _check_fitted(self, need_success=True):
        if not hasattr(self, "theta_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call `fit(D, L, steps)` first.")
        if need_success and not self.success_:
            raise FitError(f"{type(self).__name__} failed to fit model {self.model_ or '<curve>'!r}: {self.reason_}.")


def _features(ntk):
    if isinstance(ntk, NTKFeatures):
        return ntk
    if isinstance(ntk, dict):
        return NTKFeatures.from_dict(ntk) if "eigvecs" in ntk else NTKFeatures.from_gram(
            ntk["gram"], ntk["f0"], ntk.get("target"))
    raise ConfigError(f"`ntk` must be NTKFeatures or their dict, got {type(ntk).__name__}; the law with t "
                      "from the runs needs the model's NTK features (notebook 01 with `ntk_probe` > 0).")


def _check_curve(D, L, steps):
    arrays = [np.atleast_1d(np.asarray(v, dtype=float)) for v in (D, L, steps)]
    D, L, steps = arrays
    if not (D.shape == L.shape == steps.shape and D.ndim == 1):
        raise ConfigError(f"`D`, `L` and `steps` must be 1-D and the same length, got {[a.shape for a in arrays]}.")
    for name, a, ok in (("D", D, D > 0), ("L", L, L > 0), ("steps", steps, steps >= 0)):
        if not np.all(np.isfinite(a) & ok):
            raise ConfigError(f"`{name}` must be finite and {'≥ 0' if name == 'steps' else '> 0'}, "
                              f"got {a[:5].tolist()}.")
    if np.unique(D).size < 3:
        raise ConfigError(f"`D` needs at least 3 distinct sizes to fit the law, got {np.unique(D).tolist()}.")
    return D, L, steps


def _with_zero_shot(log_d, y, F, features, zero_shot):
    """The fitted points, with the zero-shot loss as the point D = 0 (log D = −inf, F = F(Θ, 0)) when given."""
    if zero_shot is None:
        return log_d, y, F
    if not (isinstance(zero_shot, (int, float, np.floating)) and np.isfinite(zero_shot) and zero_shot > 0):
        raise ConfigError(f"`zero_shot` must be a positive loss, got {zero_shot!r}; pass None without one.")
    return (np.append(log_d, -np.inf), np.append(y, np.log(zero_shot)),
            np.append(F, features.F(np.zeros(1), 1.0)))


def _steps_line(D, steps):
    """(intercept, slope) of log steps on log D through the runs that took steps."""
    used = steps > 0
    if used.sum() < 2:
        raise ConfigError(f"`steps` must be positive for at least 2 runs to predict steps at new sizes, got "
                          f"{steps.tolist()}.")
    slope, intercept = np.polyfit(np.log(D[used]), np.log(steps[used]), 1)
    return float(intercept), float(slope)


def _log_predict(theta, log_d, F):
    log_b, beta, log_e = theta
    return np.logaddexp(log_b - np.logaddexp(np.log(np.maximum(F, 1e-300)), beta * log_d), log_e)


def _fit_theta(log_d, y, F, delta):
    """Scan β with (B, E) in closed form, then polish (log B, β, log E) under a Huber loss."""
    L = np.exp(y)
    e_cap = _E_CEILING * L.min()
    starts = [s for s in (_grid_cell(beta, log_d, y, F, e_cap) for beta in _BETAS) if s is not None]
    if not starts:
        return np.full(3, np.nan), np.inf
    lo = [-30.0, _BETA_BOUNDS[0], np.log(_E_FLOOR)]
    hi = [120.0, _BETA_BOUNDS[1], np.log(e_cap)]
    best = (np.inf, None)
    for _, x0 in sorted(starts, key=lambda s: s[0])[:3]:
        fit = optimize.least_squares(lambda th: _log_predict(th, log_d, F) - y, np.clip(x0, lo, hi),
                                     bounds=(lo, hi), loss="huber", f_scale=delta, method="trf")
        if fit.cost < best[0]:
            best = (float(fit.cost), fit.x)
    return np.asarray(best[1], dtype=float), best[0]


def _grid_cell(beta, log_d, y, F, e_cap):
    """(SSE, start) of one β with B and E in closed form, relative-error weighted; None if B ≤ 0."""
    L, w = np.exp(y), np.exp(-2 * y)  # relative-error weights: linear least squares ≈ log space
    g = 1.0 / (F + np.exp(beta * log_d))
    A = np.stack([g, np.ones_like(g)], axis=1) * np.sqrt(w)[:, None]
    e = float(np.clip(np.linalg.lstsq(A, L * np.sqrt(w), rcond=None)[0][1], _E_FLOOR, e_cap))
    b = float(np.sum(w * g * (L - e)) / np.sum(w * g * g))
    if not b > 0:
        return None
    return float(np.sum((np.log(b * g + e) - y) ** 2)), np.array([np.log(b), beta, np.log(e)])
