"""Study W: the engine's t2 censored to the learning-curve envelope (W0 floor only, W1 worst-loss ceiling, W2, W3 = W4 shipped).

For FLAN, Gigaword, LCDB dev, the zoo v4 curves and the zoo corpus (the protocol budgets of
``bench_selection_study.py``; FLAN shown with Gigaword's calibrated scale, every other set with
the shipped SCALE, as in its ``table``) it prints, for the default method, 90% and 80% coverage,
the 90% interval score (log loss) and the widest 90% high/low, without and with the envelope
(:func:`lensllm_nb.analysis.curve_envelope.log_envelope`), and the share of truths outside it;
then ``lensllm``'s 90% intervals at ``zoo-args`` /64 both ways.
Declaration and result: docs/BENCHMARKS.md, "Study W".

Usage: ``LENSLLM_NB_DATA=../shared/benchmarks python benchmarks/bench_curve_envelope.py``
"""
import time
import warnings

import numpy as np

from bench_selection_study import PROTOCOL, cases, corpus
from lensllm_nb.analysis.curve_envelope import CEILINGS, log_envelope
from lensllm_nb.analysis.predict import SCALE, _t2_ppf, log_predictive

LEVELS = (0.9, 0.8)


def rows(prepared, scale, ceiling, method="curvature_drift"):
    """Per candidate and case: centre, scale, floor, ceiling and true log loss (stacked arrays)."""
    out = []
    for visible, truth in prepared:
        center, width = log_predictive(visible, method=method, scale=scale)
        floor, top = log_envelope(visible, ceiling=ceiling)
        out.append(np.stack([center, width, floor, top, np.log(truth.reindex(visible.models).to_numpy())]))
    return np.concatenate(out, axis=1)


def quality(r, level, censored):
    """Coverage, interval score (alpha = 1 - level, log loss) and widest high/low of the level interval."""
    center, width, floor, ceiling, y = r
    q = _t2_ppf(0.5 + level / 2)
    low, high = center - q * width, center + q * width
    if censored:
        low, high = np.clip(low, floor, ceiling), np.clip(high, floor, ceiling)
    inside = (low <= y) & (y <= high)
    score = (high - low) + 2 / (1 - level) * (np.maximum(low - y, 0) + np.maximum(y - high, 0))
    return inside.mean(), score.mean(), float(np.exp(np.max(high - low)))


def main():
    warnings.simplefilter("ignore", UserWarning)
    start = time.process_time()
    from lensllm_nb.analysis.predict import calibrate_scale

    giga = [(v, t.reindex(v.models).to_numpy()) for v, t in cases(corpus("gigaword"), *PROTOCOL["gigaword"])]
    scales = {"flan": calibrate_scale(giga, method="curvature_drift")}
    print(f"FLAN shown with Gigaword's scale {scales['flan']:.3f}; the others with SCALE {SCALE}")
    for name, ceiling in ((n, c) for c in CEILINGS for n in PROTOCOL):
        r = rows(list(cases(corpus(name), *PROTOCOL[name])), scales.get(name, SCALE), ceiling)
        outside = np.mean((r[4] < r[2]) | (r[4] > r[3]))
        below, above = np.mean(r[4] < r[2]), np.mean(r[4] > r[3])
        cells = []
        for level in LEVELS:
            (c0, s0, w0), (c1, s1, w1) = quality(r, level, False), quality(r, level, True)
            cells.append(f"{level:.0%}: cover {c0:.3f} -> {c1:.3f}, IS {s0:.3f} -> {s1:.3f}, widest {w0:.3g} -> {w1:.3g}")
        print(f"{ceiling:5s} {name:10s} n {r.shape[1]:5d}; truths outside {outside:.4f} (below floor {below:.4f}, above ceiling "
              f"{above:.4f})\n    " + "\n    ".join(cells), flush=True)
    for ceiling in CEILINGS:
        lensllm_zoo_args(ceiling)
    print(f"CPU {time.process_time() - start:.1f} s")


def lensllm_zoo_args(ceiling):
    """``lensllm``'s 90% intervals at zoo-args /64, plain and censored."""
    df = corpus("zoo_corpus")
    df = df[df["dataset"] == "zoo-args"]
    (visible, truth), = cases(df, (64,), None)
    center, width = log_predictive(visible, method="lensllm")
    floor, top = log_envelope(visible, ceiling=ceiling)
    q = _t2_ppf(0.95)
    for model, c, w, a, b, t in zip(visible.models, center, width, floor, top, truth.reindex(visible.models)):
        lo, hi = c - q * w, c + q * w
        print(f"  {ceiling:5s} lensllm zoo-args /64 {model:14s} true {t:.3f}  plain {np.exp(lo):.3g}-{np.exp(hi):.3g}  "
              f"censored {np.exp(np.clip(lo, a, b)):.3g}-{np.exp(np.clip(hi, a, b)):.3g} (centre "
              f"{np.exp(np.clip(c, a, b)):.3f})")


if __name__ == "__main__":
    main()
