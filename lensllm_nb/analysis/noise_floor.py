"""The noise floor of a curve: how much its measured losses scatter about the curve itself.

A loss measured at one size carries the run's noise however well extrapolators agree
on the curve; the engine adds this floor to its scale (study N, docs/BENCHMARKS.md) and
the default's pick weighs it against a predicted gap (study NP1, docs/SELECTION_STUDY.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["visible_noise"]


def visible_noise(visible) -> np.ndarray:
    """Each candidate's noise floor: the scatter of its visible log losses about their neighbours' chords.

    For three consecutive sizes (log₂ x_l < x_m < x_r) the middle log loss's residual
    from the chord, r = y_m − (w y_l + (1 − w) y_r) with w = (x_r − x_m)/(x_r − x_l),
    has variance σ²(1 + w² + (1 − w)²) under independent noise σ; the floor is the
    root mean of r² / (1 + w² + (1 − w)²) over the candidate's triples (0 with fewer
    than 3 sizes). Curvature inflates it, so it errs wide (study N, docs/BENCHMARKS.md).
    """
    out = np.zeros(len(visible.sizes))
    for i, (sizes, losses) in enumerate(zip(visible.sizes, visible.losses)):
        x, y = np.log2(sizes), np.log(losses)
        w = (x[2:] - x[1:-1]) / (x[2:] - x[:-2])
        r = y[1:-1] - (w * y[:-2] + (1 - w) * y[2:])
        if r.size:
            out[i] = np.sqrt(np.mean(r ** 2 / (1 + w ** 2 + (1 - w) ** 2)))
    return out
