"""Extrapolators of visible curves: Accept-then-Stop windows, robust lines, pooled curvature.

The ``robust_curvature`` method (the project's own extrapolator) and the
phase-transition rule of Accept-then-Stop live here, below the selector registry,
so that selectors import extrapolators and never the reverse.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.analysis.extrapolate``.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["ats_transition", "line_fit", "robust_curvature_predict", "pooled_curvature", "theil_sen"]

_RATE_GRID = np.linspace(0.0, 0.6, 121)
_SLOPE_GRID = np.linspace(0.0, 0.6, 121)
_MIN_POINTS_FOR_CURVATURE = 4
_CHUNK_CURVES = 64


def theil_sen(x, y):
    """Theil–Sen line: median pairwise slope, intercept median(y) − slope·median(x).

    The same estimator as ``scipy.stats.theilslopes(y, x, method="separate")``
    (a test checks they agree), written out because scipy's version costs about
    3x more per call (its confidence interval and input checks), and the
    widget and the progressive loop call it for every curve on every change
    (``docs/BENCHMARKS.md``).

    Parameters
    ----------
    x, y : ndarray
        One curve, at least 2 points, x increasing.

    Returns
    -------
    (slope, intercept) : tuple of float
    """
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    slope = float(np.median((y[j] - y[i])[keep] / dx[keep])) if keep.any() else 0.0
    return slope, float(np.median(y) - slope * np.median(x))


def line_fit(x, y):
    """Least-squares line (slope, intercept); ``np.polyfit(x, y, 1)`` in closed form, 10x cheaper."""
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    return slope, float(y.mean() - slope * x.mean())


def ats_transition(x, y, *, k=3, delta=5.0) -> int:
    """Index of the last pre-power point found by Accept-then-Stop (−1: none).

    Parameters
    ----------
    x, y : ndarray
        Log sizes (increasing) and log losses of one curve.
    k : int
        Points in the first line fit.
    delta : float
        Threshold on the standardized residual of the next point back.

    Notes
    -----
    Follows the published procedure exactly, including that the smallest size
    is never accepted when the walk reaches it without stopping; this is what
    reproduces the published figures.
    """
    n = x.size
    if n <= k:
        return -1
    for used in range(k, n):
        slope, intercept = line_fit(x[-used:], y[-used:])
        spread = np.std(y[-used:] - (slope * x[-used:] + intercept))
        nxt = n - used - 1
        residual = abs(y[nxt] - (slope * x[nxt] + intercept))
        # A perfectly straight tail (spread 0) makes any deviation infinite.
        if residual > delta * spread:
            break
    return n - used - 1


def _bend(u, rate):
    """Log-size coordinate in which a slope growing at ``rate`` is a straight line."""
    if rate == 0:
        return u
    return np.expm1(rate * u) / rate


def _law_offsets(u, rates, slopes):
    """Log-loss change of the E = 0 law from the last visible size, for every (r, S).

    With β = r + S and σ = S / β (the power-phase share D**β / (F + D**β) at the
    last visible size) the law gives ``−log(1 − σ + σ·exp(β·u))``; its slope at
    u = 0 is −S and its log slope grows at rate r.
    """
    beta = rates[:, None, None] + slopes[None, :, None]
    share = np.where(beta > 0, slopes[None, :, None] / np.where(beta > 0, beta, 1.0), 1.0)
    return -np.log1p(share * np.expm1(beta * u[None, None, :]))


@functools.lru_cache(maxsize=64)
def _offset_table(u_bytes):
    """Law offsets on the (rate, slope) grid and their sums, cached per size grid.

    Progressive selection and the widget score the same size grids again and again.
    """
    u = np.frombuffer(u_bytes, dtype=float)
    offsets = _law_offsets(u, _RATE_GRID, _SLOPE_GRID)  # (R, S, m)
    # Σc and Σc² let Σ(y − c − mean)² be expanded so one product serves every curve.
    return offsets, offsets.sum(axis=-1), (offsets ** 2).sum(axis=-1)


def _profiled_sse(u, ys):
    """Least-squares SSE of the law for every rate, slope and intercept profiled out.

    Parameters
    ----------
    u : ndarray (m,)
        Log sizes relative to the last one, shared by the curves in ``ys``.
    ys : ndarray (n, m)
        Log losses of n curves measured at those sizes.

    Returns
    -------
    ndarray (n, len(_RATE_GRID))
    """
    offsets, c_sum, c_sq = _offset_table(u.tobytes())
    m = u.size
    yc = np.einsum("rsm,nm->nrs", offsets, ys)
    y_sum = ys.sum(axis=1)[:, None, None]
    y_sq = (ys ** 2).sum(axis=1)[:, None, None]
    sse = y_sq - 2 * yc + c_sq[None] - (y_sum - c_sum[None]) ** 2 / m
    return sse.min(axis=2)


def pooled_curvature(log_sizes, log_losses):
    """Shared slope-growth rate of all candidates and its jackknife standard error.

    Parameters
    ----------
    log_sizes, log_losses : list of ndarray
        Visible log sizes and log losses of each candidate.

    Returns
    -------
    (rate, stderr) : tuple of float
        ``stderr`` is 0 when every leave-one-out estimate agrees.
    """
    sse = np.empty((len(log_sizes), _RATE_GRID.size))
    groups = {}
    for i, x in enumerate(log_sizes):
        # Candidates measured at the same sizes are scored in one batch.
        groups.setdefault((x - x[-1]).tobytes(), []).append(i)
    for members in groups.values():
        u = log_sizes[members[0]] - log_sizes[members[0]][-1]
        # In chunks: the (curves, rates, slopes) products stay ≈ 8 MB at any number of candidates.
        for start in range(0, len(members), _CHUNK_CURVES):
            part = members[start:start + _CHUNK_CURVES]
            sse[part] = _profiled_sse(u, np.stack([log_losses[i] for i in part]))
    total = sse.sum(axis=0)
    rate = float(_RATE_GRID[np.argmin(total)])
    n = sse.shape[0]
    leave_one_out = _RATE_GRID[np.argmin(total[None, :] - sse, axis=1)]
    stderr = float(np.sqrt((n - 1) / n * np.sum((leave_one_out - leave_one_out.mean()) ** 2)))
    return rate, stderr


def robust_curvature_predict(visible, *, significance):
    """Predicted loss at ``visible.target`` for every candidate, and the pooled rate used.

    Parameters
    ----------
    visible : lensllm_nb.analysis.visible.VisibleCurves
        The visible part of each candidate's curve.
    significance : float
        |t| above which the pooled curvature is used (the selector's default,
        1.96, is the 5% level).

    Returns
    -------
    (predictions, rate) : ndarray, float
        One finite prediction per candidate; the pooled slope-growth rate, 0 when
        it was not significant (straight lines only).
    """
    xs = [np.log(s) for s in visible.sizes]
    ys = [np.log(l) for l in visible.losses]
    x_target = np.log(visible.target)
    windows = [ats_transition(x, y) + 1 for x, y in zip(xs, ys)]
    line = np.array([_extrapolate(x[w:], y[w:], x_target, 0.0) for x, y, w in zip(xs, ys, windows)])
    rate = _significant_rate(xs, ys, significance)
    if rate == 0.0:
        return np.exp(line), rate
    bent = np.array([_extrapolate(x[w:], y[w:], x_target, rate) for x, y, w in zip(xs, ys, windows)])
    return np.exp(0.5 * (line + bent)), rate


def _significant_rate(xs, ys, significance):
    if len(xs) < 3 or min(x.size for x in xs) < _MIN_POINTS_FOR_CURVATURE:
        return 0.0
    rate, stderr = pooled_curvature(xs, ys)
    if rate > 0 and (stderr == 0 or rate / stderr > significance):
        return rate
    return 0.0


def _extrapolate(x, y, x_target, rate):
    """Log loss at x_target from a Theil–Sen fit in bent coordinates around x[-1]."""
    u = x - x[-1]
    slope, intercept = theil_sen(_bend(u, rate), y)
    return intercept + slope * _bend(x_target - x[-1], rate)
