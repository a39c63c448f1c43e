"""Where a learning curve can go between its largest visible size and the target.

The engine's predictive t₂ knows nothing of learning curves, so a runaway extrapolator
can put mass on losses no curve reaches (an error rate of 15, or 1e-15). Two facts bound
the loss at the target T: a non-negative loss falls at most like 1/n (floor: the last
visible loss × s_k / T), and more data does not make a model worse than its own curve
shows it can get (ceiling); each side is widened by twice the run noise (study W,
docs/BENCHMARKS.md; the ceiling's rise is measured net of run noise, study W4 in
docs/SELECTION_STUDY.md).
"""

from __future__ import annotations

import numpy as np

from ..utils.validation import check_choice
from .noise_floor import visible_noise

__all__ = ["CEILINGS", "NOISE_WIDENING", "log_envelope"]

# Run-noise floors added to each side of the envelope (a measured loss scatters by σ).
NOISE_WIDENING = 2.0
# How the ceiling is set (studies W, W4): the worst visible loss plus the curve's own
# fastest rise net of run noise carried to the target ("steady_rise", W4, the engine's),
# the same with the raw rise between neighbours ("rise", W2), the worst visible loss alone
# ("worst", W1) or none (W0); the last three stay for the studies' scripts.
CEILINGS = ("steady_rise", "rise", "worst", "none")
# W2's allowance for a flat curve measured to a few digits (σ = 0): 1% of the loss.
_FLAT_ROUNDING = 0.01


def log_envelope(visible, *, ceiling="steady_rise") -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's log-loss floor and ceiling at ``visible.target``.

    Parameters
    ----------
    visible : VisibleCurves
    ceiling : {"steady_rise", "rise", "worst", "none"}
        See :data:`CEILINGS`.

    Returns
    -------
    (floor, ceiling) : tuple of ndarray
        Floor ``log L_k − log(T / s_k) − 2σ`` per candidate, with ``L_k`` the loss at the
        largest visible size ``s_k`` and σ its noise floor
        (:func:`~lensllm_nb.analysis.noise_floor.visible_noise`); ceiling
        ``max_i log L_i + 2σ`` ("worst"), plus ``h · r⁺ + 0.01`` (h doublings to the
        target; "steady_rise": r⁺ the largest rise of log loss, net of 2√2σ, per doubling
        between visible sizes at least one doubling apart; "rise": r⁺ the largest rise per
        doubling between consecutive visible sizes), or +inf ("none").
    """
    check_choice("ceiling", ceiling, CEILINGS)
    noise = NOISE_WIDENING * visible_noise(visible)
    last = np.array([np.log(losses[-1]) for losses in visible.losses])
    doublings = np.array([np.log2(max(visible.target / sizes[-1], 1.0)) for sizes in visible.sizes])
    floor = last - doublings * np.log(2.0) - noise
    if ceiling == "none":
        return floor, np.full(floor.shape, np.inf)
    top = np.array([np.log(np.max(losses)) for losses in visible.losses]) + noise
    if ceiling == "rise":
        top = top + doublings * _largest_rise(visible) + _FLAT_ROUNDING
    elif ceiling == "steady_rise":
        top = top + doublings * _steady_rise(visible, noise) + _FLAT_ROUNDING
    return floor, top


def _largest_rise(visible):
    """Largest rise of log loss per doubling between consecutive visible sizes, per candidate (≥ 0)."""
    rises = []
    for sizes, losses in zip(visible.sizes, visible.losses):
        pace = np.diff(np.log(losses)) / np.diff(np.log2(sizes)) if len(sizes) > 1 else np.zeros(1)
        rises.append(max(float(np.max(pace)), 0.0))
    return np.array(rises)


def _steady_rise(visible, two_sigma):
    """Largest rise of log loss per doubling, net of the noise of two points (2√2σ), over pairs ≥ 1 doubling apart (≥ 0)."""
    rises = []
    for sizes, losses, noise in zip(visible.sizes, visible.losses, two_sigma):
        x, y = np.log2(sizes), np.log(losses)
        span = x[None, :] - x[:, None]
        net = (y[None, :] - y[:, None] - np.sqrt(2.0) * noise) / np.where(span >= 1.0, span, np.inf)
        rises.append(max(float(np.max(net)), 0.0))
    return np.array(rises)
