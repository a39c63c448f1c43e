"""Peak memory and time of the prediction engine against the number of candidates (issue 18, defect 4).

Each case runs in a fresh Python process, so the peak resident set (``ru_maxrss``)
belongs to that call alone (interpreter, numpy and pandas included; the "table only"
row is the same process building the table without predicting). Wall and CPU
seconds are both given: the CPU time is the steadier figure on a shared machine.
Two entry points:

* ``predict_candidates`` — the engine called from Python on the tidy table;
* ``select`` — ``lensllm-nb select CURVES --max-train 1600 --format json`` on the
  table written to a CSV (the time includes reading and validating the file).

    python benchmarks/bench_engine_scale.py                  # 1,000 and 10,000 candidates
    python benchmarks/bench_engine_scale.py --models 2000

Synthetic curves: the rectified laws of ``bench_fit_memory.synthetic_table`` (random
B, beta, D_l, E; sizes 0, 200 … 51,200; 1 % noise; seed 0); the budget is 1,600
(four positive sizes visible) and the target 51,200.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fit_memory import synthetic_table  # noqa: E402

MAX_TRAIN = 1600


def _child(entry, n_models) -> dict:
    """Run in the child: build the table, run one entry point, report peak RSS and time."""
    table = synthetic_table(n_models)
    chosen = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.csv"
        if entry == "select":
            table.to_csv(path, index=False)
        start, cpu = time.perf_counter(), time.process_time()
        if entry == "predict_candidates":
            from lensllm_nb.analysis.predict import predict_candidates

            chosen = predict_candidates(table, max_train=MAX_TRAIN).chosen
        elif entry == "select":
            from lensllm_nb.cli import main

            out = Path(tmp) / "select.json"
            with open(out, "w", encoding="utf-8") as stream:
                old, sys.stdout = sys.stdout, stream
                try:
                    code = main(["select", str(path), "--max-train", str(MAX_TRAIN), "--format", "json"])
                finally:
                    sys.stdout = old
            if code != 0:
                raise SystemExit(f"select exited {code}")
            chosen = json.loads(out.read_text(encoding="utf-8"))["chosen"]
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"entry": entry, "models": n_models, "chosen": chosen, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(peak_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1000,10000", help="comma-separated candidate counts")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, int(args.models))))
        return
    counts = [int(v) for v in args.models.split(",")]
    runs = [("table only", counts[-1])] + [(e, n) for n in counts for e in ("predict_candidates", "select")]
    print(f"{'entry':>18} {'models':>7} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>11}  chosen")
    for entry, n in runs:
        cmd = [sys.executable, __file__, "--child", entry, "--models", str(n)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{entry:>18} {n:>7} {row['seconds']:>8.1f} {row['cpu_seconds']:>7.1f} {row['peak_rss_mb']:>11.0f}  "
              f"{row['chosen']}", flush=True)


if __name__ == "__main__":
    main()
