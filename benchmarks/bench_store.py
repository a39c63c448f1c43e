"""Benchmark: write throughput of the results store, SQLite file vs PostgreSQL server.

For each backend, 1 and 4 writer processes upsert rows as a grid of fine-tuning runs
does (each row its own transaction, with its config/versions JSON), and the rows
found afterwards are counted (nothing may be lost). Timing starts when every writer
has opened the store (a barrier), so interpreter start-up is not counted. The
PostgreSQL server is a throw-away local one (``TemporaryPostgres``: fsync off, on
127.0.0.1) unless ``--url`` names one. Run from the repository root:

    .venv/bin/python benchmarks/bench_store.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from lensllm_nb.collection.store import ResultsStore, mask_url
from lensllm_nb.collection.store.tempserver import TemporaryPostgres


def _row(model, n_train):
    return {"model": model, "dataset": "bench", "n_train": n_train, "seed": 0, "config_hash": "bench",
            "status": "ok", "test_loss": 1.0 + 1.0 / (1 + n_train), "config": {"lr": 1e-4},
            "versions": {"python": sys.version.split()[0]}}


def _writer(target, model, rows, barrier):
    with ResultsStore(target) as store:
        barrier.wait()
        for i in range(rows):
            store.upsert(_row(model, i))


def _measure(target, processes, rows):
    """Return (seconds, rows found) for `processes` writers of `rows` rows each."""
    ResultsStore(target).close()  # create the schema before the race starts
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    procs = [ctx.Process(target=_writer, args=(target, f"w{w}", rows, barrier)) for w in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    with ResultsStore(target) as store:
        return seconds, len(store)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="rows per writer")
    parser.add_argument("--url", default=None, help="PostgreSQL database URL (default: a temporary server)")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = None if args.url else stack.enter_context(TemporaryPostgres())
        results = []
        for processes in (1, 4):
            sqlite_file = folder / f"bench-{processes}.db"
            url = args.url or server.create_database(f"bench_{processes}_{uuid.uuid4().hex[:8]}")
            for backend, target in (("SQLite file", sqlite_file), ("PostgreSQL URL", url)):
                seconds, found = _measure(target, processes, args.rows)
                results.append((backend, processes, processes * args.rows, seconds, found))

        command = [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv]
        print(f"command: {' '.join(shlex.quote(mask_url(a)) for a in command)}")
        print()
        print("| backend | writer processes | rows | seconds | rows/s | rows found |")
        print("|---|---:|---:|---:|---:|---:|")
        for backend, processes, rows, seconds, found in results:
            print(f"| {backend} | {processes} | {rows} | {seconds:.2f} | {rows / seconds:,.0f} | {found} |")


if __name__ == "__main__":
    main()
