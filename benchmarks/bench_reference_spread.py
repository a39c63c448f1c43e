"""Study R1 (rejected, not shipped): the engine's spread as the median reference gap instead of the RMS.

For FLAN, Gigaword, the zoo corpus and LCDB dev at ratios 8, 16, 32, 64, it computes each
candidate's log centre (default method), true log loss and both spreads over the reference
extrapolators; each rule gets the multiplier that covers 90% of FLAN's truths and is applied
unchanged to the other sets. Prints coverage, interval score and widths per set and rule.
Declaration and result: docs/BENCHMARKS.md, "Plausibility of the engine's intervals".

Usage: ``LENSLLM_NB_DATA=../shared/benchmarks python benchmarks/bench_reference_spread.py``
"""
import warnings

import numpy as np
import pandas as pd

from lensllm_nb.analysis import predict, published_curves
from lensllm_nb.analysis.visible import visible_from_valid
from lensllm_nb.analysis.calibration import interval_score
from lensllm_nb.analysis.predict import _bounds, _t2_ppf
from lensllm_nb.errors import ConfigError

RATIOS = (8, 16, 32, 64)
SETS = ("flan", "gigaword", "zoo_corpus", "lcdb_dev")


def _case(part, full, ratio):
    """One (dataset, ratio): log centre, log truth and both spreads per candidate; None if skipped."""
    try:
        visible = visible_from_valid(part[part["n_train"] <= full // ratio], max_train=full // ratio, target=full)
        fitted = predict._fit_methods(visible, predict.DEFAULT_METHOD)
    except ConfigError:
        return None
    preds = {name: np.log(sel.predictions_.to_numpy()) for name, sel in fitted.items()}
    center = preds[predict.DEFAULT_METHOD]
    gaps = np.abs(np.array([preds[m] - center for m in predict.REFERENCE_METHODS]))
    truth = part[part["n_train"] == full].set_index("model")["test_loss"].reindex(visible.models)
    return pd.DataFrame({"ratio": ratio, "c": center, "y": np.log(truth.to_numpy()),
                         "rms": np.sqrt(np.mean(gaps ** 2, axis=0)), "med": np.median(gaps, axis=0)})


def cases(name):
    table = published_curves.load(name)
    frames = []
    for dataset in sorted(table["dataset"].unique()):
        part = table[table["dataset"] == dataset]
        full = int(part["n_train"].max())
        frames += [f.assign(set=name, dataset=dataset) for f in (_case(part, full, r) for r in RATIOS) if f is not None]
    return pd.concat(frames, ignore_index=True)


def _scores(g, spread, level):
    """Coverage, mean interval score and high/low of the engine's bounds (:func:`predict._bounds`) at `level`."""
    low, high = _bounds(g["c"].to_numpy(), spread.to_numpy(), level)
    true = np.exp(g["y"].to_numpy())
    return (((low <= true) & (true <= high)).mean(), interval_score(low, high, true, alpha=1 - level).mean(),
            high / low)


def main():
    warnings.simplefilter("ignore", UserWarning)
    data = pd.concat([cases(name) for name in SETS], ignore_index=True)
    for rule in ("rms", "med"):
        flan = data[data["set"] == "flan"]
        scale = float(np.quantile(np.abs(flan["y"] - flan["c"]) / np.maximum(flan[rule], 1e-12), 0.9,
                                  method="higher") / _t2_ppf(0.95))
        print(f"rule {rule}: multiplier calibrated on FLAN = {scale:.3f}")
        for name in SETS:
            g = data[data["set"] == name]
            spread = np.maximum(scale * g[rule], 1e-3)
            (cov90, is90, width), (cov80, _, _) = _scores(g, spread, 0.9), _scores(g, spread, 0.8)
            print(f"  {name:10s} n {len(g):5d} cov90 {cov90:.3f} cov80 {cov80:.3f} IS90 {is90:.3f} "
                  f">100x {np.mean(width > 100):.3f} >1e4 {np.mean(width > 1e4):.3f} widest {width.max():.3g}")


if __name__ == "__main__":
    main()
