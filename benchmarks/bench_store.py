"""Benchmark: write throughput of the SQLite results store.

Measures rows per second for one-row upserts from one process, for
``upsert_many`` in one transaction, and for several processes upserting at once
(each row its own transaction, as a grid of fine-tuning runs does), and checks
that no row is lost. Run from the repository root:

    .venv/bin/python benchmarks/bench_store.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import sys
import tempfile
import time
from pathlib import Path

from lensllm_nb.store import ResultsStore


def _row(model, n_train):
    return {"model": model, "dataset": "bench", "n_train": n_train, "seed": 0, "config_hash": "bench",
            "status": "ok", "test_loss": 1.0 + 1.0 / (1 + n_train), "config": {"lr": 1e-4},
            "versions": {"python": sys.version.split()[0]}}


def _writer(path, model, rows):
    with ResultsStore(path) as store:
        for i in range(rows):
            store.upsert(_row(model, i))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="rows per writer")
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        results = []
        path = Path(folder) / "single.db"
        start = time.perf_counter()
        _writer(path, "single", args.rows)
        results.append(("upsert, 1 process", args.rows, time.perf_counter() - start, path))

        path = Path(folder) / "many.db"
        start = time.perf_counter()
        with ResultsStore(path) as store:
            store.upsert_many([_row("many", i) for i in range(args.rows)])
        results.append(("upsert_many (one transaction)", args.rows, time.perf_counter() - start, path))

        path = Path(folder) / "concurrent.db"
        ResultsStore(path).close()  # create the schema before the race starts
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_writer, args=(path, f"w{w}", args.rows)) for w in range(args.processes)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        # Includes starting the interpreters: a lower bound on concurrent throughput.
        results.append((f"upsert, {args.processes} processes at once", args.processes * args.rows,
                        time.perf_counter() - start, path))

        print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
        print()
        print("| writes | rows | seconds | rows/s | rows found |")
        print("|---|---:|---:|---:|---:|")
        for name, rows, seconds, db in results:
            with ResultsStore(db) as store:
                found = len(store)
            print(f"| {name} | {rows} | {seconds:.2f} | {rows / seconds:,.0f} | {found} |")


if __name__ == "__main__":
    main()
