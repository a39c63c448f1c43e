"""Vectorized, deterministic, robust fitting of the two-phase scaling laws.

All three laws of :mod:`lensllm_nb.analysis.laws` are members of one family,

    L(D) = B / (D_l + D**beta) + E,

with D_l = 0 for the vanilla power law (then L = B * D**-beta + E), D_l free for the
rectified law, and D_l = F(Θ, t) bounded or fixed by NTK features for the LensLLM law.
Fits are done in log-loss space, where the published fit errors are measured and
where a relative error means the same for a loss of 4 and of 1.5.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.fitting``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LawSpec",
    "BatchFit",
    "fit_batch",
    "law_log_predict",
    "law_jacobian",
    "PARAM_BOUNDS",
]

# Bounds of the free parameters, in the engine's coordinates. beta above 2 or below
# 0.01 has never been reported for fine-tuning curves; the other bounds only keep
# the arithmetic finite.
PARAM_BOUNDS = {
    "log_B": (-30.0, 80.0),
    "beta": (0.01, 2.0),
    "log_Dl": (-20.0, 60.0),
    "log_E": (np.log(1e-8), np.inf),  # the upper bound is per curve: E < min(L)
}
_N_PARAMS = 4
_E_CEILING = 0.999  # E must stay below the smallest observed loss
_USUAL_LOG_LOSS = (np.log(1e-3), np.log(1e3))  # the losses PARAM_BOUNDS are set for


@dataclass(frozen=True)
class LawSpec:
    """Which member of the family to fit.

    Parameters
    ----------
    pre_learned : {"none", "free", "bounded", "fixed"}
        How D_l enters: ``"none"`` (vanilla, D_l = 0), ``"free"`` (rectified),
        ``"bounded"`` (0 ≤ D_l ≤ ``dl_max`` per curve, LensLLM with t fitted),
        ``"fixed"`` (D_l = ``dl_fixed`` per curve, LensLLM with t fixed).
    loss : {"huber", "l2"}
        Loss on the log residuals.
    huber_delta : float
        Log residual beyond which the Huber loss grows linearly.
    n_starts : int
        Number of grid cells polished by Levenberg–Marquardt per curve.
    max_iter : int
        Levenberg–Marquardt iterations.
    """

    pre_learned: str = "free"
    loss: str = "huber"
    huber_delta: float = 0.02
    n_starts: int = 3
    max_iter: int = 80


@dataclass
class BatchFit:
    """Result of :func:`fit_batch`: one row per curve.

    Attributes
    ----------
    theta : ndarray (n, 4)
        (log B, beta, log D_l, log E); log D_l is -inf when D_l = 0.
    rmse_log : ndarray (n,)
        RMSE of log loss over the fitted points.
    success : ndarray of bool (n,)
    reason : list of str
        Why a fit failed ('' when it succeeded).
    cov : ndarray (n, 4, 4)
        Covariance of theta from the Gauss–Newton approximation (σ² (JᵀWJ)⁺).
    dof : ndarray (n,)
        Residual degrees of freedom: points minus free parameters (0 or less when
        the law interpolates the points).
    sigma : ndarray (n,)
        Residual standard deviation of the log loss, sqrt(SSE / max(dof, 1)).
    log_scale : ndarray (n,)
        Log of the factor the curve's losses were divided by during the fit (0
        for losses within [1e-3, 1e3]); the bounds on log B and log E held
        relative to it. ``theta`` is in the curve's own units.
    """

    theta: np.ndarray
    rmse_log: np.ndarray
    success: np.ndarray
    reason: list
    cov: np.ndarray
    dof: np.ndarray
    sigma: np.ndarray
    log_scale: np.ndarray


def law_log_predict(theta, D):
    """Log loss predicted by the law family.

    Parameters
    ----------
    theta : array_like (..., 4)
        (log B, beta, log D_l, log E).
    D : array_like
        Sizes, broadcast against ``theta[..., :1]``.
    """
    theta = np.asarray(theta, dtype=float)
    log_b, beta, log_dl, log_e = (theta[..., i, None] for i in range(_N_PARAMS))
    log_d = np.log(np.asarray(D, dtype=float))
    # log(B/(Dl + D^beta) + E) computed as a log-sum-exp so huge D^beta or
    # tiny E never overflow or lose the smaller term.
    log_den = np.logaddexp(log_dl, beta * log_d)
    return np.logaddexp(log_b - log_den, log_e)


def _huber_weights(r, delta):
    a = np.abs(r)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))


def _huber_rho(r, delta):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective(r, mask, spec):
    if spec.loss == "l2":
        return 0.5 * np.sum(mask * r * r, axis=-1)
    return np.sum(mask * _huber_rho(r, spec.huber_delta), axis=-1)


def _grid_starts(log_d, y, mask, spec, dl_max, dl_fixed):
    """Scan (beta, D*) with (B, E) in closed form; return the best cells as starts."""
    betas = np.geomspace(0.02, 1.5, 30)
    n = y.shape[0]
    big = np.where(mask > 0, log_d, -np.inf).max(axis=1)
    small = np.where(mask > 0, log_d, np.inf).min(axis=1)
    if spec.pre_learned == "none":
        log_dl = np.full((n, betas.size, 1), -np.inf)
    elif spec.pre_learned == "fixed":
        log_dl = np.broadcast_to(np.log(dl_fixed)[:, None, None], (n, betas.size, 1))
    else:
        # Transition sizes from well below the first point to well beyond the last,
        # plus D_l = 0 so the rectified law can always fall back to a power law.
        frac = np.linspace(-0.3, 1.6, 24)
        log_dstar = small[:, None] + frac[None, :] * (big - small)[:, None]
        log_dl = betas[None, :, None] * log_dstar[:, None, :]
        log_dl = np.concatenate([np.full((n, betas.size, 1), -np.inf), log_dl], axis=2)
        if spec.pre_learned == "bounded":
            log_dl = np.minimum(log_dl, np.log(dl_max)[:, None, None])
    # g(D) = 1/(D_l + D^beta) for every (curve, beta, D_l cell, point).
    log_g = -np.logaddexp(log_dl[..., None], betas[None, :, None, None] * log_d[:, None, None, :])
    g = np.exp(log_g)
    L = np.exp(y)[:, None, None, :]
    # Relative-error weights make the linear least squares approximate log space.
    w = (mask / np.exp(2 * y))[:, None, None, :]
    sw, sg, sl = w.sum(-1), (w * g).sum(-1), (w * L).sum(-1)
    sgg, sgl = (w * g * g).sum(-1), (w * g * L).sum(-1)
    det = sw * sgg - sg * sg
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (sw * sgl - sg * sl) / det
        e = (sgg * sl - sg * sgl) / det
        e_cap = _E_CEILING * np.exp(np.where(mask > 0, y, np.inf).min(axis=1))[:, None, None]
        clipped = (e < 1e-8) | (e > e_cap) | ~np.isfinite(e)
        e = np.clip(np.where(np.isfinite(e), e, 1e-8), 1e-8, e_cap)
        # With E on a bound, B is the least squares fit of L - E on g alone.
        b = np.where(clipped, (w * g * (L - e[..., None])).sum(-1) / sgg, b)
        valid = (b > 0) & np.isfinite(b)
        pred = np.log(np.where(valid[..., None], b[..., None] * g + e[..., None], 1.0))
    sse = np.where(valid, (mask[:, None, None, :] * (pred - y[:, None, None, :]) ** 2).sum(-1), np.inf)
    flat = sse.reshape(n, -1)
    k = min(spec.n_starts, flat.shape[1])
    best = np.argsort(flat, axis=1, kind="stable")[:, :k]
    bi, di = np.unravel_index(best, sse.shape[1:])
    rows = np.arange(n)[:, None]
    theta = np.stack([
        np.log(np.where(valid[rows, bi, di], b[rows, bi, di], 1.0)),
        betas[bi],
        log_dl[rows, bi, di],
        np.log(e[rows, bi, di]),
    ], axis=-1)
    return theta, np.isfinite(flat[rows, best])


def _bounds(n, y, mask, spec, dl_max):
    lo = np.array([PARAM_BOUNDS[k][0] for k in PARAM_BOUNDS])
    hi = np.array([PARAM_BOUNDS[k][1] for k in PARAM_BOUNDS])
    lo, hi = np.tile(lo, (n, 1)), np.tile(hi, (n, 1))
    hi[:, 3] = np.log(_E_CEILING) + np.where(mask > 0, y, np.inf).min(axis=1)
    if spec.pre_learned == "bounded":
        hi[:, 2] = np.minimum(hi[:, 2], np.log(dl_max))
    return lo, hi


def law_jacobian(theta, D):
    """Log loss of one law and its exact derivatives with respect to ``theta``.

    Parameters
    ----------
    theta : array_like (4,)
        (log B, beta, log D_l, log E).
    D : array_like (m,)
        Positive sizes.

    Returns
    -------
    (log_loss, jac) : ndarray (m,), ndarray (m, 4)
    """
    theta = np.asarray(theta, dtype=float)[None, :]
    log_l, jac = _jacobian(theta, np.log(np.asarray(D, dtype=float))[None, :])
    return log_l[0], jac[0]


def _jacobian(theta, log_d):
    log_b, beta, log_dl, log_e = (theta[:, i, None] for i in range(_N_PARAMS))
    log_p = beta * log_d
    log_den = np.logaddexp(log_dl, log_p)
    log_g = log_b - log_den
    log_l = np.logaddexp(log_g, log_e)
    share_g = np.exp(log_g - log_l)  # fraction of the loss above the asymptote
    jac = np.stack([
        share_g,
        -share_g * np.exp(log_p - log_den) * log_d,
        -share_g * np.exp(log_dl - log_den),
        np.exp(log_e - log_l),
    ], axis=-1)
    return log_l, jac


def _levenberg_marquardt(theta, log_d, y, mask, lo, hi, free, spec):
    """Polish a batch of starts; each row has its own damping."""
    n = theta.shape[0]
    lam = np.full(n, 1e-2)
    theta = np.clip(theta, lo, hi)
    pred, jac = _jacobian(theta, log_d)
    r = pred - y
    cost = _objective(r, mask, spec)
    eye = np.eye(_N_PARAMS)
    for _ in range(spec.max_iter):
        w = mask if spec.loss == "l2" else mask * _huber_weights(r, spec.huber_delta)
        jw = jac * free[:, None, :] * w[..., None]
        jtj = np.einsum("npi,npj->nij", jw, jac * free[:, None, :])
        grad = np.einsum("npi,np->ni", jw, r)
        damp = lam[:, None, None] * (jtj * eye + 1e-9 * eye) + (1.0 - free)[:, None, :] * eye
        step = -np.linalg.solve(damp + jtj, grad[..., None])[..., 0] * free
        trial = np.clip(np.where(np.isfinite(step), theta + step, theta), lo, hi)
        t_pred, t_jac = _jacobian(trial, log_d)
        t_r = t_pred - y
        t_cost = _objective(t_r, mask, spec)
        better = np.isfinite(t_cost) & (t_cost < cost)
        theta = np.where(better[:, None], trial, theta)
        pred = np.where(better[:, None], t_pred, pred)
        jac = np.where(better[:, None, None], t_jac, jac)
        r = np.where(better[:, None], t_r, r)
        lam = np.clip(np.where(better, lam / 3.0, lam * 4.0), 1e-12, 1e12)
        cost = np.where(better, t_cost, cost)
        # Damping only grows past 1e6 after a run of rejected steps: every row
        # sits in a minimum it cannot leave.
        if np.all(lam > 1e6):
            break
    return theta, cost, r, jac


def fit_batch(sizes, losses, spec: LawSpec = LawSpec(), *, dl_max=None, dl_fixed=None) -> BatchFit:
    """Fit the law family to many curves at once.

    Parameters
    ----------
    sizes, losses : sequence of 1-D arrays
        One pair per curve; sizes > 0 and losses > 0, already validated. Curves may
        have different lengths.
    spec : LawSpec
        Which law and loss.
    dl_max : array_like (n,), optional
        Upper bound on D_l per curve (``spec.pre_learned == "bounded"``).
    dl_fixed : array_like (n,), optional
        Value of D_l per curve (``spec.pre_learned == "fixed"``).

    Returns
    -------
    BatchFit
    """
    n = len(sizes)
    width = max(len(s) for s in sizes)
    log_d = np.ones((n, width))
    y = np.zeros((n, width))
    mask = np.zeros((n, width))
    for i, (d, l) in enumerate(zip(sizes, losses)):
        log_d[i, : len(d)] = np.log(d)
        y[i, : len(l)] = np.log(l)
        mask[i, : len(d)] = 1.0
    # Padded cells repeat the first point with zero weight so every value stays finite.
    log_d = np.where(mask > 0, log_d, log_d[:, :1])
    y = np.where(mask > 0, y, y[:, :1])
    log_scale = _log_scale(y, mask)
    y = y - log_scale[:, None]
    dl_max = None if dl_max is None else np.asarray(dl_max, dtype=float)
    dl_fixed = None if dl_fixed is None else np.asarray(dl_fixed, dtype=float)

    starts, ok = _grid_starts(log_d, y, mask, spec, dl_max, dl_fixed)
    k = starts.shape[1]
    rep = lambda a: np.repeat(a, k, axis=0)  # noqa: E731 - one start per row
    lo, hi = _bounds(n, y, mask, spec, dl_max)
    lo_r, hi_r = rep(lo), rep(hi)
    free = np.ones((n * k, _N_PARAMS))
    theta0 = starts.reshape(n * k, _N_PARAMS)
    if spec.pre_learned in ("none", "fixed"):
        # D_l is not a free parameter: pin it by equal bounds and a zero step.
        free[:, 2] = 0.0
        lo_r[:, 2] = hi_r[:, 2] = theta0[:, 2]
    theta, cost, r, jac = _levenberg_marquardt(theta0, rep(log_d), rep(y), rep(mask), lo_r, hi_r, free, spec)
    cost = np.where(ok.reshape(-1), cost, np.inf)
    cost = cost.reshape(n, k)
    best = np.argmin(cost, axis=1)
    pick = np.arange(n) * k + best
    theta, r, jac = theta[pick], r[pick], jac[pick]
    n_points = mask.sum(axis=1)
    rmse = np.sqrt((mask * r * r).sum(axis=1) / n_points)
    n_free = free[pick].sum(axis=1)
    dof = n_points - n_free
    sigma2 = (mask * r * r).sum(axis=1) / np.maximum(dof, 1.0)
    jf = jac * free[pick][:, None, :] * mask[..., None]
    cov = np.linalg.pinv(np.einsum("npi,npj->nij", jf, jf)) * sigma2[:, None, None]
    success = np.isfinite(cost.min(axis=1)) & np.all(np.isfinite(theta[:, [0, 1, 3]]), axis=1) & np.isfinite(rmse)
    reason = ["" if s else "no grid cell gave a positive amplitude B; the curve may be rising or flat" for s in success]
    # B and E scale with the loss: undo the normalisation on their logs.
    theta[:, [0, 3]] += log_scale[:, None]
    return BatchFit(theta=theta, rmse_log=rmse, success=success, reason=reason, cov=cov, dof=dof,
                    sigma=np.sqrt(sigma2), log_scale=log_scale)


def _log_scale(y, mask):
    """Log of the factor each curve's losses are divided by before fitting.

    :data:`PARAM_BOUNDS` (E ≥ 1e-8, log B ≤ 80) and the grid's linear weights are
    set for losses of order one; a curve with a loss outside [1e-3, 1e3] (say
    x1e300, or subnormal) is fitted around its geometric middle instead, which
    the law allows exactly (B and E scale with the loss). Other curves: 0.
    """
    top = np.where(mask > 0, y, -np.inf).max(axis=1)
    bottom = np.where(mask > 0, y, np.inf).min(axis=1)
    usual = (bottom >= _USUAL_LOG_LOSS[0]) & (top <= _USUAL_LOG_LOSS[1])
    return np.where(usual, 0.0, 0.5 * (top + bottom))
