"""Speed and accuracy of the analytic core on the benchmark curves.

Run: LENSLLM_NB_DATA=../shared/benchmarks .venv/bin/python benchmarks/bench_core.py [--reference]

Prints, per dataset: wall time of a full `benchmark` run (all methods, 7 ratios) in
this process after imports, time to fit 30 curves with each law (best of 5), the
median RMSE of log loss on all sizes, mean PearCorr / RelAcc of every method, and
with --reference the time of per-curve `scipy.optimize.minimize` fits with random
restarts (the approach of the published code) over the same 7 × 30 fits.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from lensllm_nb.analysis.curve_fits import fit_curves
from lensllm_nb.analysis.protocol import DEFAULT_METHOD, run_benchmark
from lensllm_nb.analysis.published_curves import load


def _best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _reference_minimize(table):
    """Per-curve scipy.optimize.minimize of a Huber log-loss objective, 10 random starts."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    target = table["n_train"].max()
    start = time.perf_counter()
    for ratio in (8, 16, 32, 64, 128, 256, 512):
        visible = table[(table["n_train"] > 0) & (table["n_train"] <= target // ratio)]
        for _, group in visible.groupby("model"):
            x = np.log(group["n_train"].to_numpy(float))
            y = np.log(group["test_loss"].to_numpy(float))

            def objective(p):
                log_b, beta, log_dl, log_e = p
                pred = np.logaddexp(log_b - np.logaddexp(log_dl, beta * x), log_e)
                r = pred - y
                a = np.abs(r)
                return np.sum(np.where(a < 1e-3, 0.5 * r * r, 1e-3 * (a - 5e-4)))

            for _ in range(10):
                minimize(objective, rng.random(4))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", action="store_true", help="also time per-curve scipy minimize fits")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    for name in ("flan", "gigaword"):
        table = load(name)
        run_benchmark(table, methods=["ats"], ratios=[8])  # warm imports
        full = _best_of(lambda: run_benchmark(table), repeat=3)
        print(f"\n## {name}\nfull benchmark (8 methods x 7 ratios): {full:.2f} s")
        for law in ("vanilla", "rectified", "lensllm"):
            secs = _best_of(lambda: fit_curves(table, law))
            rmse = fit_curves(table, law).summary["rmse_log"].median()
            print(f"fit 30 curves, {law:9s}: {secs:.3f} s, median RMSE(log) on all sizes {rmse:.4f}")
        res = run_benchmark(table).results
        means = res.groupby("method")[["pearson", "relacc", "cost_fraction"]].mean().round(4)
        print(means.to_string())
        print(f"{DEFAULT_METHOD} by ratio:",
              res[res.method == DEFAULT_METHOD].set_index("ratio")["pearson"].round(3).to_dict())
        if args.reference:
            print(f"reference per-curve minimize (rectified, 10 starts, 7 ratios x 30 curves): "
                  f"{_reference_minimize(table):.1f} s")


if __name__ == "__main__":
    main()
