"""How wide the default's 90% intervals get, per ratio, and study M1 (a monotone upper end; rejected).

For one benchmark set (``flan``, ``gigaword``, ``lcdb_dev``, ``zoo_corpus``) the engine's
predictions at ratios 8, 16, 32, 64 of each dataset's largest size
(:func:`lensllm_nb.analysis.calibration.calibration_predictions`, default method):

* the share of intervals whose high/low exceeds 100 and 10**4, per ratio, and the widest ones;
* M1: coverage and interval score before and after capping each high end at the candidate's
  lowest visible loss (declared in docs/BENCHMARKS.md, "Plausibility of the engine's intervals").

Usage: ``LENSLLM_NB_DATA=../shared/benchmarks python benchmarks/bench_interval_plausibility.py lcdb_dev``
"""
import sys
import warnings

import numpy as np
import pandas as pd

from lensllm_nb.analysis import published_curves
from lensllm_nb.analysis.calibration import calibration_predictions, interval_score
from lensllm_nb.errors import ConfigError

RATIOS = (8, 16, 32, 64)


def predictions(table):
    """Every dataset's predictions at levels 0.9 and 0.8, with each candidate's lowest visible loss (`cap`)."""
    frames = []
    for dataset in sorted(table["dataset"].unique()):
        part = table[table["dataset"] == dataset]
        full = int(part["n_train"].max())
        pred = pd.concat([_at_ratio(part, dataset, r) for r in RATIOS], ignore_index=True)
        if pred.empty:
            continue
        caps = {r: part[(part["n_train"] <= full // r) & (part["n_train"] > 0)].groupby("model")["test_loss"].min()
                for r in pred["ratio"].unique()}
        pred["cap"] = [caps[r][m] for r, m in zip(pred["ratio"], pred["model"])]
        frames.append(pred)
    return pd.concat(frames, ignore_index=True)


def _at_ratio(part, dataset, ratio):
    """One ratio's predictions; empty where it leaves some candidate fewer than 3 points (the protocol skips it)."""
    try:
        return calibration_predictions(part, dataset=dataset, ratios=(ratio,), levels=(0.9, 0.8))
    except ConfigError:
        return pd.DataFrame()


def report(name, pred):
    pred = pred.assign(high_m=np.minimum(pred["high"], np.maximum(pred["cap"], pred["low"])))
    for level in (0.9, 0.8):
        q = pred[pred["level"] == level]
        cov = ((q["low"] <= q["true"]) & (q["true"] <= q["high"])).mean()
        cov_m = ((q["low"] <= q["true"]) & (q["true"] <= q["high_m"])).mean()
        score = interval_score(q["low"], q["high"], q["true"], alpha=1 - level).mean()
        score_m = interval_score(q["low"], q["high_m"], q["true"], alpha=1 - level).mean()
        print(f"{name} level {level}: M1 coverage {cov:.3f} -> {cov_m:.3f}; IS {score:.3f} -> {score_m:.3f}; "
              f"truth above the cap {(q['true'] > q['cap']).mean():.3f}; n {len(q)}")
    q = pred[pred["level"] == 0.9].assign(high_low=lambda d: d["high"] / d["low"])
    print(q.groupby("ratio").agg(n=("high_low", "size"), over_100=("high_low", lambda h: (h > 100).mean()),
                                 over_1e4=("high_low", lambda h: (h > 1e4).mean()),
                                 median=("high_low", "median"), max=("high_low", "max")).to_string())
    widest = q.sort_values("high_low", ascending=False).head(5)
    print(widest[["dataset", "ratio", "model", "predicted", "low", "high", "true"]].to_string(index=False))


def main(name):
    warnings.simplefilter("ignore", UserWarning)
    report(name, predictions(published_curves.load(name)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lcdb_dev")
