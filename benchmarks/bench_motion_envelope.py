"""Studies E and N on the engine's intervals: the motion envelope (E1: the scale capped; E2: and the
centre clipped) and the noise floor (N1: the candidate's own visible scatter added to the scale).

For FLAN, Gigaword, LCDB dev, the zoo v4 curves and the zoo corpus (the protocol budgets of
``bench_selection_study.py``; the zoo corpus at ratios 8-64), it computes per candidate
the engine's log centre and raw spread (default method, multiplier 1), the true log loss and
the envelope half-width w = h * d; each rule's multiplier is calibrated on FLAN and on Gigaword
(smallest that covers 90% of the corpus's truths) and FLAN is shown with Gigaword's, every other
set with FLAN's. Prints coverage, interval score and widths per set and rule.
Declaration and result: docs/BENCHMARKS.md, "Plausibility of the engine's intervals".

Usage: ``LENSLLM_NB_DATA=../shared/benchmarks python benchmarks/bench_motion_envelope.py``
"""
import warnings

import numpy as np
import pandas as pd

from bench_selection_study import PROTOCOL, cases, corpus
from lensllm_nb.analysis.predict import _center_and_spread, _fit_methods, _t2_ppf, visible_noise

# "spread only": the engine's scale before study N shipped; N1 is the engine's scale now.
RULES = ("spread only", "E1", "E2", "N1")
Q90 = _t2_ppf(0.95)


def envelope(visible):
    """Last visible log loss y_k and half-width w = h * d of every candidate (inf where one point only)."""
    paces = [np.max(np.abs(np.diff(np.log(l))) / np.diff(np.log2(s))) if len(s) > 1 else np.nan
             for s, l in zip(visible.sizes, visible.losses)]
    typical = np.nanmedian(paces)
    d = np.where(np.isnan(paces), np.inf, np.maximum(paces, typical))
    h = np.array([np.log2(visible.target / s[-1]) for s in visible.sizes])
    return np.log([l[-1] for l in visible.losses]), np.maximum(h, 0) * d


def frame(prepared, name):
    """One row per candidate and case: centre c, raw spread s, truth y, last loss yk, half-width w, noise n."""
    rows = []
    for visible, truth in prepared:
        center, spread = _center_and_spread(_fit_methods(visible, "curvature_drift"), "curvature_drift")
        yk, w = envelope(visible)
        rows.append(pd.DataFrame({"c": center, "s": np.maximum(spread, 1e-3),
                                  "y": np.log(truth.reindex(visible.models).to_numpy()),
                                  "yk": yk, "w": w, "n": visible_noise(visible)}))
    return pd.concat(rows, ignore_index=True).assign(set=name)


def distribution(g, rule, m):
    """Centre and scale of every row under ``rule`` with multiplier ``m``."""
    center = g["c"].to_numpy()
    scale = m * g["s"].to_numpy()
    if rule == "N1":
        return center, np.maximum(np.hypot(scale, g["n"].to_numpy()), 1e-3)
    if rule != "spread only":
        scale = np.minimum(scale, g["w"].to_numpy() / Q90)
    if rule == "E2":
        center = np.clip(center, g["yk"] - g["w"], g["yk"] + g["w"])
    return center, np.maximum(scale, 1e-3)


def calibrate(g, rule):
    """Smallest multiplier whose 90% intervals cover as many truths as `calibrate_scale`'s rule asks.

    `calibrate_scale` takes the 90% quantile ("higher") of the truths' ratios, so it covers
    ceil(0.9 (n - 1)) + 1 of n; coverage grows with the multiplier, so bisection finds it.
    """
    need = int(np.ceil(0.9 * (len(g) - 1))) + 1
    lo, hi = 0.0, 1e3
    for _ in range(60):
        mid = (lo + hi) / 2
        center, scale = distribution(g, rule, mid)
        covered = np.sum(np.abs(g["y"] - center) <= Q90 * scale)
        lo, hi = (lo, mid) if covered >= need else (mid, hi)
    return hi


def scores(g, rule, m):
    center, scale = distribution(g, rule, m)
    err = np.abs(g["y"].to_numpy() - center)
    out = {}
    for level in (0.9, 0.8):
        half = _t2_ppf(0.5 + level / 2) * scale
        out[level] = np.mean(err <= half)
    half = Q90 * scale
    score = np.mean(2 * half + 20 * np.maximum(err - half, 0))
    width = np.exp(2 * half)
    return out[0.9], out[0.8], score, np.mean(width > 100), np.mean(width > 1e4), width.max()


def main():
    warnings.simplefilter("ignore", UserWarning)
    sets = {name: frame(list(cases(corpus(name), *PROTOCOL[name])), name) for name in PROTOCOL}
    for rule in RULES:
        ms = {src: calibrate(sets[src], rule) for src in ("flan", "gigaword")}
        print(f"rule {rule}: multiplier from FLAN {ms['flan']:.3f}, from Gigaword {ms['gigaword']:.3f}")
        for name, g in sets.items():
            src = "gigaword" if name == "flan" else "flan"
            cov90, cov80, score, w100, w1e4, widest = scores(g, rule, ms[src])
            binds = np.mean(np.abs(distribution(g, rule, ms[src])[1] - np.maximum(ms[src] * g["s"], 1e-3)) > 1e-12)
            print(f"  {name:10s} n {len(g):5d} (M from {src}) cov90 {cov90:.3f} cov80 {cov80:.3f} IS90 {score:.3f} "
                  f">100x {w100:.3f} >1e4 {w1e4:.3f} widest {widest:.3g} rule changes {binds:.3f}", flush=True)


if __name__ == "__main__":
    main()
