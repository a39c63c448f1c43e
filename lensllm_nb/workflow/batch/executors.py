"""`run_batch`: a grid's jobs, stage by stage, on a local process pool or on Dask.

The local executor waits on the job processes from a thread pool (GPU jobs one at a
time); the Dask executor submits the same `run_job` to ``dask.distributed`` workers
(a `LocalCluster`, or an existing scheduler such as dask-jobqueue's). One runner
holds ``--out``; SIGINT/SIGTERM stop the run, which still writes its record and index.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...collection.store import check_dask_store
from ...errors import BatchError, ConfigError
from ...utils.safe_output import open_inside
from .control import RunControl, StopRun, lock_folder
from .execute import run_job
from .grid import _slug, _validate_grid, expand_grid, load_grid
from .outputs import BatchResult, _batch_result, _plain, _result, _write_outputs

__all__ = ["run_batch"]


def run_batch(grid, *, out=None, executor="local", workers=None, scheduler=None, max_jobs=None,
              log=print) -> BatchResult:
    """Run every job of a grid and write notebooks, reports, index and run record.

    A failing notebook does not stop the others. The run record is written also
    when the run itself fails (for example when the scheduler is unreachable).

    Parameters
    ----------
    grid : str or Path or dict
        A grid file or mapping (see `load_grid`).
    out : str or Path, optional
        The output folder. Default: ``reports/<grid name>``.
    executor : {"local", "dask"}
        ``local``: a pool of processes on this machine; ``dask``: ``dask.distributed``.
    workers : int, optional
        Jobs at a time (local) or workers of the `LocalCluster` (dask without
        `scheduler`). Default: the grid's ``workers`` (2).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); needs ``executor="dask"``.
    max_jobs : int, optional
        The most jobs the grid may expand to (default: the grid's ``max_jobs``, 10,000).
    log : callable or None
        Called with one line per finished job.

    Returns
    -------
    BatchResult
        Per-job results; ``n_failed`` > 0 when any notebook failed; ``interrupted``
        when SIGINT/SIGTERM stopped it (at any stage: also while the grid expands).

    Raises
    ------
    StopRun
        When a signal came while the grid was read, before ``out`` was known.
    """
    control = RunControl()
    with control.signals():
        with control.interruptible():
            grid, out, workers = _prepare(grid, out, executor, workers, scheduler)
        with lock_folder(out):
            # The fixed outputs are checked now (a link there is refused) rather than after every job ran.
            for name in ("run_record.json", "index.html"):
                open_inside(out, name, "a").close()
            return _run_locked(grid, out, executor, workers, scheduler, max_jobs, log, control)


def _prepare(grid, out, executor, workers, scheduler):
    """The validated grid, the created output folder and the number of workers of `run_batch`."""
    grid = load_grid(grid) if isinstance(grid, (str, Path)) else _validate_grid(grid)
    if executor not in ("local", "dask"):
        raise ConfigError(f"`executor` = {executor!r} is not supported; use 'local' or 'dask'")
    if scheduler and executor != "dask":
        raise ConfigError(f"`scheduler` = {scheduler!r} needs `executor` = 'dask'; add --executor dask")
    workers = int(grid["workers"] if workers is None else workers)
    if workers < 1:
        raise ConfigError(f"`workers` = {workers} must be at least 1")
    out = Path(out or Path("reports") / _slug(grid["name"])).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"`out` = {str(out)!r} cannot be created ({exc.strerror}); choose another --out") from None
    return grid, out, workers


def _run_locked(grid, out, executor, workers, scheduler, max_jobs, log, control) -> BatchResult:
    """`run_batch` once `out` is locked and signals stop the run instead of killing it."""
    config = {"grid": _plain(grid), "executor": executor, "workers": workers,
              "scheduler": scheduler, "max_jobs": max_jobs, "out": str(out), "jobs": []}
    jobs, results, error, started, closers = [], [], None, time.perf_counter(), []
    try:
        # Inside the try: a grid naming a missing notebook still leaves a run record;
        # interruptible: a signal stops even a long expansion, and the record says so.
        with control.interruptible():
            jobs = expand_grid(grid, out=out, max_jobs=max_jobs)
        config["jobs"] = [job.name for job in jobs]
        if executor == "local" or not scheduler:
            _check_kernel(grid["kernel"])
        if executor == "dask":
            client, closers = _dask_client(workers, scheduler, any(job.gpu for job in jobs))
            check_dask_store(client, [job.parameters.get("store") for job in jobs])
            slots = max(1, len(client.scheduler_info().get("workers", {})))
            run_stage = _dask_stage(client)
        else:
            slots, run_stage = workers, _local_stage
        for stage in sorted({job.stage for job in jobs}):
            if control.stopped:
                break
            stage_jobs = _staggered([job for job in jobs if job.stage == stage], slots, grid["stagger"])
            results.extend(run_stage(stage_jobs, workers=workers, control=control,
                                     log=_progress(log, len(results), len(jobs))))
    except StopRun:  # a signal during the expansion: `control.interrupted` names it in the record
        pass
    except BaseException as exc:  # a crash of the runner itself is recorded as failed
        error = f"{type(exc).__name__}: {exc}"
        control.stop("error", force=True)
        raise
    finally:
        for close in closers:
            close()
        result = _batch_result(out, jobs, results, started, control)
        _write_outputs(result, grid, config, error)
    return result


def _check_kernel(name) -> None:
    """Raise `BatchError` when the Jupyter kernel `name` is not registered here."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise BatchError(
            f"`kernel` = {name!r} is not a registered Jupyter kernel; run `make kernel` "
            f"(or `python -m ipykernel install --sys-prefix --name {name}`) or set `kernel` in the grid"
        ) from None


def _staggered(jobs, slots, stagger) -> list[Job]:
    """Give the first wave of jobs increasing start delays (avoids port races)."""
    from dataclasses import replace

    return [replace(job, start_delay=i * stagger if i < slots else 0.0) for i, job in enumerate(jobs)]


def _local_stage(jobs, *, workers, log, control) -> list[dict]:
    """Run jobs on this machine, `workers` at a time; GPU jobs one at a time."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    gpu_slot = threading.Semaphore(1)

    def call(job):
        if not job.gpu:
            return run_job(job, control)
        with gpu_slot:
            return run_job(job, control)

    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(call, job): job for job in jobs}
        for future in as_completed(futures):
            results.append(_collect(future, futures[future]))
            log(results[-1])
    return results


def _dask_client(workers, scheduler, needs_gpu):
    """Return a Dask client and the functions that close it (and its cluster)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise BatchError(
                f"`scheduler` = {scheduler!r} could not be reached ({exc}); start the scheduler "
                "or leave out --scheduler to use a LocalCluster"
            ) from exc
        return client, [client.close]
    # One thread per worker process: papermill changes the process's working
    # directory. A GPU=1 resource per worker lets `gpu: true` jobs run.
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", resources={"GPU": 1} if needs_gpu else None)
    client = Client(cluster)
    return client, [client.close, cluster.close]


def _dask_stage(client):
    """Return a stage runner that submits jobs to `client`."""
    from uuid import uuid4

    def run(jobs, *, workers, log, control):
        from dask.distributed import as_completed

        futures = {}
        for job in jobs:
            future = client.submit(run_job, job, pure=False, key=f"{job.name}-{uuid4().hex[:8]}",
                                   resources={"GPU": 1} if job.gpu else None)
            futures[future] = job
        results = []
        for future in as_completed(list(futures)):
            if control.stopped:
                # Jobs on workers are cancelled; closing the cluster ends their processes.
                client.cancel(list(futures))
                break
            results.append(_collect(future, futures[future]))
            log(results[-1])
        return results

    return run


def _collect(future, job) -> dict:
    """Return the result of a finished future; an infrastructure error is a failed job."""
    try:
        return future.result()
    except Exception as exc:  # the worker died or the job could not be shipped
        return _result(job, "failed", 0.0, f"{type(exc).__name__}: {exc}")


def _progress(log, done, total):
    """Return a callback that logs one line per finished job."""
    count = [done]

    def report(result):
        count[0] += 1
        if log is not None:
            log(f"[{count[0]}/{total}] {result['status']:<7} {result['name']}  job {result['seconds']:.1f} s")

    return report
