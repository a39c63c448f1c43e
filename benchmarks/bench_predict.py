"""Accuracy, calibration, progressive selection and speed of the prediction engine.

Run: LENSLLM_NB_DATA=../shared/benchmarks .venv/bin/python benchmarks/bench_predict.py

Prints, for FLAN and Gigaword under the protocol of Lin et al. (2024) (7 budgets x
30 models, target 1,638,400):

* per-ratio PearCorr / RelAcc of ats, robust_curvature, slope_drift and the default;
* coverage of the default method's 80% / 90% intervals and the mean interval score
  (alpha = 0.1, log loss), leave-one-dataset-out: the scale multiplier calibrated
  on the other set (``calibrate_scale``), and with the shipped ``SCALE``;
* progressive selection (p_best drop rule) at 1% and 3% of full-data FLOPs;
* wall time of the full benchmark (every method) and of one ``predict_candidates``
  call for 30 models (median of 5).
"""

from __future__ import annotations

import platform
import time

import numpy as np

from lensllm_nb.analysis.calibration import interval_score
from lensllm_nb.analysis.metrics import relacc
from lensllm_nb.analysis.published_curves import load
from lensllm_nb.analysis.predict import (DEFAULT_METHOD, SCALE, _t2_ppf, calibrate_scale, log_predictive,
    p_best, predict_candidates)
from lensllm_nb.analysis.visible import visible_curves
from lensllm_nb.analysis.progressive import ProgressiveSelector
from lensllm_nb.analysis.protocol import DEFAULT_RATIOS, run_benchmark

SETS = ("flan", "gigaword")
METHODS = ["ats", "robust_curvature", "slope_drift", DEFAULT_METHOD]


def _cases(table):
    target = int(table["n_train"].max())
    truth = table[table["n_train"] == target].groupby("model")["test_loss"].mean()
    out = []
    for ratio in DEFAULT_RATIOS:
        visible = visible_curves(table[table["n_train"] <= target // ratio], max_train=target // ratio,
                                 target=target)
        out.append((visible, truth.reindex(visible.models).to_numpy()))
    return out


def _interval_quality(cases, scale):
    cover = {0.8: [], 0.9: []}
    score = []
    for visible, truth in cases:
        center, spread = log_predictive(visible, method=DEFAULT_METHOD, scale=scale)
        y = np.log(truth)
        for level in cover:
            half = _t2_ppf(0.5 + level / 2) * spread
            cover[level].append(np.abs(y - center) <= half)
        half = _t2_ppf(0.95) * spread
        score.append(interval_score(np.exp(center - half), np.exp(center + half), truth, alpha=0.1))
    return {level: float(np.mean(v)) for level, v in cover.items()}, float(np.mean(score))


def _per_budget_and_reliability(cases, scales):
    """Coverage by ratio (multiplier from the other set) and p_best against how often it came true."""
    pbs, bests = [], []
    for shown, other in (("flan", "gigaword"), ("gigaword", "flan")):
        rows = {0.9: [], 0.8: []}
        for visible, truth in cases[shown]:
            center, spread = log_predictive(visible, method=DEFAULT_METHOD, scale=scales[other])
            y = np.log(truth)
            for level in rows:
                rows[level].append(np.mean(np.abs(y - center) <= _t2_ppf(0.5 + level / 2) * spread))
            pbs.append(p_best(center, spread))
            bests.append(np.arange(y.size) == np.argmin(y))
        print(f"| {shown} | " + ", ".join(f"{c:.2f}" for c in rows[0.9]) + " | "
              + ", ".join(f"{c:.2f}" for c in rows[0.8]) + " |")
    pb, best = np.concatenate(pbs), np.concatenate(bests)
    for low, high in ((0, 0.02), (0.02, 0.1), (0.1, 0.3), (0.3, 1.01)):
        sel = (pb >= low) & (pb < high)
        print(f"p_best in [{low}, {high}): n={sel.sum()}, mean p_best {pb[sel].mean():.3f}, "
              f"share that was best {best[sel].mean():.3f}")


def _accuracy(name, table):
    result = run_benchmark(table, methods=METHODS)
    res = result.results
    print(f"\n### {name}: PearCorr / RelAcc by ratio")
    print("| method | " + " | ".join(str(r) for r in DEFAULT_RATIOS) + " | mean |")
    print("|---|" + "---:|" * (len(DEFAULT_RATIOS) + 1))
    for method in METHODS:
        rows = res[res["method"] == method].set_index("ratio")
        cells = [f"{rows.loc[r, 'pearson']:.3f} / {rows.loc[r, 'relacc']:.3f}" for r in DEFAULT_RATIOS]
        print(f"| {method} | " + " | ".join(cells)
              + f" | **{rows['pearson'].mean():.4f} / {rows['relacc'].mean():.4f}** |")


def _progressive(name, table):
    target = int(table["n_train"].max())
    truth = table[table["n_train"] == target].groupby("model")["test_loss"].mean()
    pool = table[table["n_train"] < target]
    for budget in (0.01, 0.03):
        start = time.perf_counter()
        sel = ProgressiveSelector(budget=budget).fit(pool, target=target)
        print(f"| {name} | {budget:.0%} | {relacc(truth[sel.chosen_], truth.to_numpy()):.4f} | "
              f"{sel.cost_fraction_:.4f} | {len(sel.history_)} | {time.perf_counter() - start:.2f} s |")


def _speed(name, table):
    # CPU time of this process next to wall time: the shared machine's load
    # inflates wall time by other jobs' share of the two cores.
    wall, cpu = time.perf_counter(), time.process_time()
    run_benchmark(table)
    full = (time.perf_counter() - wall, time.process_time() - cpu)
    times = []
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        predict_candidates(table, max_train=25600)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    one = np.median(np.array(times), axis=0)
    print(f"| {name} | {full[0]:.2f} s / {full[1]:.2f} s | {one[0]:.3f} s / {one[1]:.3f} s |")


def main():
    print(f"machine: {platform.machine()} {platform.processor() or ''}, Python {platform.python_version()}; "
          f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    tables = {name: load(name) for name in SETS}
    for name, table in tables.items():
        _accuracy(name, table)
    cases = {name: _cases(table) for name, table in tables.items()}
    scales = {name: calibrate_scale(c, method=DEFAULT_METHOD, level=0.9) for name, c in cases.items()}
    print("\n### Intervals of the default method (80% / 90% coverage, mean interval score alpha=0.1)")
    print("| shown on | scale from | scale | cover 80% | cover 90% | interval score |")
    print("|---|---|---:|---:|---:|---:|")
    for shown, other in (("flan", "gigaword"), ("gigaword", "flan")):
        for label, scale in ((other, scales[other]), ("shipped SCALE", SCALE), (f"{shown} (in-sample)", scales[shown])):
            cover, score = _interval_quality(cases[shown], scale)
            print(f"| {shown} | {label} | {scale:.3f} | {cover[0.8]:.3f} | {cover[0.9]:.3f} | {score:.3f} |")
    print("\n### Coverage by ratio (90% | 80%), multiplier from the other set; p_best reliability")
    _per_budget_and_reliability(cases, scales)
    print("\n### Progressive selection (p_best drop rule, risk 0.01)")
    print("| set | budget | RelAcc | cost fraction | rounds | time |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, table in tables.items():
        _progressive(name, table)
    print("\n### Speed")
    print("| set | full benchmark, every method x 7 ratios (wall / CPU) | predict_candidates, 30 models (wall / CPU) |")
    print("|---|---:|---:|")
    for name, table in tables.items():
        _speed(name, table)


if __name__ == "__main__":
    main()
