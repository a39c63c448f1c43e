"""Peak memory and time of `fit_curves` against the number of models (issue 9, item 8).

Each size runs in a fresh Python process, so the peak resident set (``ru_maxrss``)
belongs to that fit alone; the figure includes the interpreter, numpy and pandas
(the "baseline" row: the same process building the table without fitting).

    python benchmarks/bench_fit_memory.py               # 1,000 / 5,000 / 20,000 models
    python benchmarks/bench_fit_memory.py --models 2000 --chunk-size 2000   # one engine call

Synthetic curves: rectified laws with random (B, beta, D_l, E) on 9 sizes
200..51,200 plus the zero-shot point, 1 % multiplicative noise, seed 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SIZES = np.array([0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200])


def synthetic_table(n_models, seed=0) -> pd.DataFrame:
    """Tidy curves of `n_models` rectified laws with 1 % noise."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(5, 50, n_models)[:, None]
    beta = rng.uniform(0.2, 0.6, n_models)[:, None]
    dl = rng.uniform(1, 200, n_models)[:, None]
    e = rng.uniform(0.5, 1.5, n_models)[:, None]
    sizes = np.maximum(SIZES, 1)[None, :]
    loss = (b / (dl + sizes ** beta) + e) * np.exp(rng.normal(0, 0.01, (n_models, SIZES.size)))
    return pd.DataFrame({
        "model": np.repeat([f"m{i:05d}" for i in range(n_models)], SIZES.size),
        "dataset": "synthetic",
        "n_train": np.tile(SIZES, n_models),
        "seed": 0,
        "test_loss": loss.ravel(),
    })


def _one(n_models, chunk_size, law, fit) -> dict:
    """Run in the child: build the table, fit (unless baseline), report peak RSS and time."""
    from lensllm_nb.analysis.curve_fits import fit_curves

    table = synthetic_table(n_models)
    start = time.perf_counter()
    ok = None
    if fit:
        result = fit_curves(table, law, chunk_size=chunk_size)
        ok = int((result.summary["status"] == "ok").sum())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"models": n_models, "chunk_size": chunk_size, "law": law, "fit": fit, "ok": ok,
            "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1000,5000,20000", help="comma-separated model counts")
    parser.add_argument("--chunk-size", type=int, default=None, help="curves per engine call (default: the module's)")
    parser.add_argument("--law", default="lensllm")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-fit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from lensllm_nb.analysis.curve_fits import CHUNK_SIZE

    chunk = args.chunk_size or CHUNK_SIZE
    if args.child:
        print(json.dumps(_one(int(args.models), chunk, args.law, not args.no_fit)))
        return
    counts = [int(v) for v in args.models.split(",")]
    runs = [(counts[-1], False)] + [(n, True) for n in counts]
    print(f"{'models':>7} {'chunk':>6} {'fit':>5} {'ok':>6} {'seconds':>8} {'s/1k models':>11} {'peak RSS MB':>11}")
    for n, fit in runs:
        cmd = [sys.executable, __file__, "--child", "--models", str(n), "--chunk-size", str(chunk), "--law", args.law]
        out = subprocess.run(cmd + ([] if fit else ["--no-fit"]), capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        per_k = row["seconds"] / n * 1000 if fit else float("nan")
        print(f"{n:>7} {chunk:>6} {str(fit):>5} {str(row['ok']):>6} {row['seconds']:>8.1f} {per_k:>11.2f} "
              f"{row['peak_rss_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
