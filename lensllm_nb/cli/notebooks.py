"""Notebook commands: ``run`` (batch grid), ``report`` (render notebooks), ``demo``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``run``, ``report`` and ``demo`` sub-commands."""
    run = subparsers.add_parser(
        "run", help="execute a grid of parameterized notebooks (papermill), locally or on Dask",
        description=(
            "Expand GRID.yaml into notebook × parameter jobs, execute each with papermill in its "
            "own process, and write executed notebooks, one HTML report each, index.html and "
            "run_record.json into --out. Exits 1 when any notebook failed."
        ),
    )
    run.add_argument("grid", metavar="GRID.yaml", help="the batch grid (see templates/grid.yaml)")
    run.add_argument("--executor", choices=("local", "dask"), default="local",
                     help="local processes (default) or dask.distributed")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="address of a running Dask scheduler (default: start a LocalCluster)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="notebooks at a time / LocalCluster workers (default: the grid's `workers`, 2)")
    run.add_argument("--out", metavar="DIR", help="output folder (default: reports/<grid name>)")
    run.add_argument("--max-jobs", type=int, metavar="N",
                     help="refuse a grid expanding to more than N jobs (default: the grid's `max_jobs`, 10000)")
    run.set_defaults(func=_run)

    report = subparsers.add_parser(
        "report", help="render executed notebooks to self-contained HTML reports",
        description="Render each NOTEBOOK with the lensllm_report template into DIR and write DIR/index.html.",
    )
    report.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="executed .ipynb files")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for the reports")
    report.add_argument("--templates", metavar="DIR",
                        help="template base folder holding lensllm_report/ (default: this checkout's templates/)")
    report.set_defaults(func=_report)

    demo = subparsers.add_parser(
        "demo", help="the main job offline: zoo curves, fits, selection and benchmark reports",
        description=(
            "Build the offline model zoo (cached), fine-tune every zoo candidate on nested subsets "
            "(notebook 01), then fit, select and benchmark (notebooks 02-04) through the batch "
            "runner, and write reports/demo/index.html."
        ),
    )
    demo.add_argument("--out", default="reports/demo", metavar="DIR", help="output folder (default: reports/demo)")
    demo.add_argument("--workers", type=int, default=2, metavar="N", help="notebooks at a time (default: 2)")
    demo.add_argument("--executor", choices=("local", "dask"), default="local", help="batch executor")
    demo.set_defaults(func=_demo)


def _run(args) -> int:
    """Execute a grid; exit 1 when any notebook failed."""
    from ..workflow.batch import StopRun, run_batch

    try:
        result = run_batch(args.grid, out=args.out, executor=args.executor,
                           workers=args.workers, scheduler=args.scheduler, max_jobs=args.max_jobs)
    except StopRun as stop:
        return _stopped_before_jobs(stop, "run")
    _print_result(result)
    return _exit_code(result, "run")


def _stopped_before_jobs(stop, command) -> int:
    """128 + signal number for a run stopped while its grid was read (before `out` was known).

    The command's own run record (in the cache) records it; no job ran.
    """
    print(f"lensllm-nb {command}: interrupted by {stop.signal} while reading the grid; no job ran", file=sys.stderr)
    return 128 + getattr(signal, stop.signal, signal.SIGINT)


def _exit_code(result, command) -> int:
    """0 when every job is ok, 1 when one failed, 128 + signal number when the run was stopped."""
    if result.interrupted:
        print(f"lensllm-nb {command}: interrupted by {result.interrupted}; the run record lists every job's "
              "status", file=sys.stderr)
        return 128 + getattr(signal, result.interrupted, signal.SIGINT)
    return 0 if result.ok else 1


def _report(args) -> int:
    """Render notebooks; exit 0 even when a rendered notebook had failed."""
    from ..workflow.report import render_reports

    entries = render_reports(args.notebooks, args.out, templates=args.templates)
    for entry in entries:
        print(f"{entry['status']:<7} {entry['report']}")
    print(f"index: {Path(args.out).resolve() / 'index.html'}")
    return 0


def _demo(args) -> int:
    """Run the offline demo; exit 1 when any of its notebooks failed."""
    from ..workflow.batch import StopRun
    from ..workflow.demo import run_demo

    try:
        result = run_demo(out=args.out, workers=args.workers, executor=args.executor)
    except StopRun as stop:
        return _stopped_before_jobs(stop, "demo")
    _print_result(result)
    return _exit_code(result, "demo")


def _print_result(result) -> None:
    """Print the summary table and where the outputs are."""
    print()
    print(result.summary())
    print(f"reports: {result.index}")
    print(f"run record: {result.record}")
