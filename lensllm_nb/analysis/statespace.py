"""State-space slope-drift extrapolator: a local linear trend whose slope drifts.

Each candidate's log loss y over log size x follows a level ℓ and a slope b:

    ℓ_{k+1} = ℓ_k + Δx_k · b_k
    b_{k+1} = (1 + ρ)^{Δx_k / ln 2} · b_k + ζ_k,   ζ_k ~ N(0, q · σ_i² · Δx_k / ln 2)
    y_k     = ℓ_k + ε_k,                            ε_k ~ N(0, σ_i²)

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.statespace``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SlopeDriftFit", "fit_slope_drift", "RHO_GRID", "Q_GRID"]

# ρ per doubling: from flattening (−0.1) to strong steepening (+0.3); fitted values
# on real fine-tuning curves lie well inside.
RHO_GRID = np.linspace(-0.1, 0.3, 21)
# q: slope-drift variance relative to the noise variance, over six decades.
Q_GRID = np.logspace(-3, 3, 13)
_LN2 = np.log(2.0)
_CHUNK_CANDIDATES = 256


@dataclass(frozen=True)
class SlopeDriftFit:
    """Fitted shared (q, ρ) and every candidate's filtered state at its last point.

    Attributes
    ----------
    q, rho : float
        Shared drift variance ratio and slope growth per doubling.
    level, slope : ndarray (n,)
        Filtered level and slope at each candidate's last visible size.
    cov : ndarray (n, 2, 2)
        Their covariance in units of σ_i².
    sigma2 : ndarray (n,)
        Profiled noise variance σ_i².
    last_x : ndarray (n,)
        Log of each candidate's last visible size.
    """

    q: float
    rho: float
    level: np.ndarray
    slope: np.ndarray
    cov: np.ndarray
    sigma2: np.ndarray
    last_x: np.ndarray

    def forecast(self, x_target):
        """Mean and variance of the log loss at log size ``x_target`` for every candidate."""
        n = (x_target - self.last_x) / _LN2
        growth = 1.0 + self.rho
        steps = n if abs(self.rho) < 1e-12 else (growth ** n - 1.0) / self.rho
        a = _LN2 * steps  # d mean / d slope
        mean = self.level + a * self.slope
        var_state = self.cov[:, 0, 0] + 2 * a * self.cov[:, 0, 1] + a ** 2 * self.cov[:, 1, 1]
        var_drift = self.q * _drift_factor(n, growth)
        return mean, self.sigma2 * (var_state + var_drift + 1.0)


def _drift_factor(n, growth):
    """Σ over the future slope shocks of (their effect on the level)², per unit q.

    A shock at doubling j changes every later slope by (1+ρ)^(k−j), so the level n
    doublings ahead by ln2 · Σ_{k=j+1}^{n−1} (1+ρ)^(k−j−1). Summed over integer steps
    up to ceil(n); the last partial step is counted whole (conservative).
    """
    steps = np.ceil(np.max(n)).astype(int)
    total = np.zeros_like(n, dtype=float)
    for j in range(steps):
        remaining = np.clip(n - j - 1, 0, None)
        effect = _LN2 * (remaining if abs(growth - 1) < 1e-12 else (growth ** remaining - 1) / (growth - 1))
        total += np.where(j < n, effect ** 2, 0.0)
    return total


def fit_slope_drift(log_sizes, log_losses, *, q_grid=Q_GRID, rho_grid=RHO_GRID) -> SlopeDriftFit:
    """Fit the shared (q, ρ) by profile maximum likelihood over all candidates.

    Parameters
    ----------
    log_sizes, log_losses : list of ndarray
        Each candidate's visible log sizes (increasing, at least 3) and log losses.
    q_grid, rho_grid : ndarray
        Candidate values of q and ρ.

    Returns
    -------
    SlopeDriftFit
    """
    x, y, valid = _pad(log_sizes, log_losses)
    q = np.repeat(q_grid, rho_grid.size)[:, None]          # (G, 1)
    rho = np.tile(rho_grid, q_grid.size)[:, None]          # (G, 1)
    # The grid is scored in chunks of candidates (memory flat in their number),
    # then the chosen (q, ρ) alone is filtered again for every candidate's state.
    loglik = np.zeros(q.shape[0])
    for start in range(0, x.shape[0], _CHUNK_CANDIDATES):
        rows = slice(start, start + _CHUNK_CANDIDATES)
        _, _, sse, logdet, count = _filter(x[rows], y[rows], valid[rows], q, rho)
        sigma2 = np.maximum(sse / np.maximum(count, 1), 1e-12)  # (G, chunk)
        loglik += -0.5 * (logdet + count * np.log(sigma2)).sum(axis=1)
    g = int(np.argmax(loglik))
    m, P, sse, _, count = _filter(x, y, valid, q[g:g + 1], rho[g:g + 1])
    sigma2 = np.maximum(sse / np.maximum(count, 1), 1e-12)
    return SlopeDriftFit(q=float(q[g, 0]), rho=float(rho[g, 0]), level=m[0, :, 0], slope=m[0, :, 1],
                         cov=P[0], sigma2=sigma2[0], last_x=np.array([s[-1] for s in log_sizes], dtype=float))


def _pad(log_sizes, log_losses):
    width = max(s.size for s in log_sizes)
    x = np.zeros((len(log_sizes), width))
    y = np.zeros_like(x)
    valid = np.zeros_like(x, dtype=bool)
    for i, (s, l) in enumerate(zip(log_sizes, log_losses)):
        x[i, : s.size], y[i, : s.size], valid[i, : s.size] = s, l, True
    return x, y, valid


def _diffuse_start(x, y, q, rho):
    """Filtered state after the first two points under a diffuse slope prior, in closed form.

    The limit D → ∞ of a slope variance D (level variance 1 at the first point): level y₁,
    slope g·(y₁ − y₀)/Δx, covariance [[1, g/Δx], [g/Δx, 2g²/Δx² + q·Δx/ln 2]] with g the slope
    growth over Δx. A large finite D (1e8, before) cancelled to 1e-8 in every update and made
    3-point fits depend on the loss's units at 1e-6.
    """
    dx = (x[:, 1] - x[:, 0])[None, :]                      # (1, n)
    grow = (1.0 + rho) ** (dx / _LN2)                      # (G, n)
    m = np.zeros((q.shape[0], x.shape[0], 2))
    m[..., 0] = y[None, :, 1]
    m[..., 1] = grow * (y[None, :, 1] - y[None, :, 0]) / dx
    P = np.zeros(m.shape + (2,))
    P[..., 0, 0] = 1.0
    P[..., 0, 1] = P[..., 1, 0] = grow / dx
    P[..., 1, 1] = 2.0 * grow ** 2 / dx ** 2 + q * dx / _LN2
    return m, P


def _filter(x, y, valid, q, rho):
    """Kalman filter in units of σ_i² for every (grid point, candidate) at once.

    Returns the last filtered mean (G, n, 2) and covariance (G, n, 2, 2), and per
    (G, n) the sums of squared standardized innovations and of log innovation
    variances, and their count (third point on).
    """
    G, n = q.shape[0], x.shape[0]
    m, P = _diffuse_start(x, y, q, rho)
    sse = np.zeros((G, n))
    logdet = np.zeros((G, n))
    count = np.zeros((1, n))
    for k in range(2, x.shape[1]):
        on = valid[:, k][None, :]                              # (1, n)
        dx = np.where(valid[:, k], x[:, k] - x[:, k - 1], 0.0)[None, :]
        doublings = dx / _LN2
        grow = (1.0 + rho) ** doublings                        # (G, n)
        # Predict: F = [[1, dx], [0, grow]], Q = diag(0, q·doublings).
        m0 = m[..., 0] + dx * m[..., 1]
        m1 = grow * m[..., 1]
        p00 = P[..., 0, 0] + 2 * dx * P[..., 0, 1] + dx ** 2 * P[..., 1, 1]
        p01 = grow * (P[..., 0, 1] + dx * P[..., 1, 1])
        p11 = grow ** 2 * P[..., 1, 1] + q * doublings
        # Update with y_k (observation variance 1 in these units).
        s = p00 + 1.0
        v = y[None, :, k] - m0
        k0, k1 = p00 / s, p01 / s
        scored = on & (k >= 2)
        sse += np.where(scored, v ** 2 / s, 0.0)
        logdet += np.where(scored, np.log(s), 0.0)
        count = count + scored
        new = np.stack([m0 + k0 * v, m1 + k1 * v], axis=-1)
        newP = np.stack([np.stack([p00 - k0 * p00, p01 - k0 * p01], -1),
                         np.stack([p01 - k1 * p00, p11 - k1 * p01], -1)], -2)
        m = np.where(on[..., None], new, m)
        P = np.where(on[..., None, None], newP, P)
    return m, P, sse, logdet, count
