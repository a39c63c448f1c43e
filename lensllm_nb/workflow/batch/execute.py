"""One batch job: a fresh Python process runs papermill, then renders the report.

`run_job` starts ``python -m lensllm_nb.workflow.batch`` (the package's
``__main__`` calls `_child_main`), hands it the job on stdin and kills its process
group past the job's time limit. In that process `_execute` retries kernel-start
races and routes papermill's writes through `write_inside`; `_finish` records the
verdict in the executed notebook and renders its report. A failing notebook is a
status, never an exception.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ...utils.safe_output import mask_secrets, open_inside, strict_json, write_inside
from ..report import render_report
from .control import RunControl, die_with_parent, sleep_unless_stopped, wait_or_kill
from .grid import Job
from .outputs import _result

__all__ = ["run_job"]

# Seconds a job's process gets, beyond its kernel's start and run, to render the report.
_RENDER_GRACE_S = 60
_KERNEL_LOG_LEVEL = "--IPKernelApp.log_level=ERROR"
# Kernel-start failures worth a retry: two kernels racing for the same ports.
_RETRYABLE_MESSAGES = ("Kernel died before replying to kernel_info", "Kernel didn't respond",
                       "Address already in use")


def run_job(job: Job, control=None) -> dict:
    """Execute one job in a fresh Python process and render its report.

    Never raises for a failing notebook: the failure is the returned status.

    Parameters
    ----------
    job : Job
        The job (see `expand_grid`).
    control : RunControl, optional
        The run's process control (stop flag, running processes); a fresh one
        when the job runs alone (for example on a Dask worker).

    Returns
    -------
    dict
        ``name``, ``stage``, ``notebook``, ``parameters``, ``status``, ``seconds``,
        ``error``, ``attempts``, ``output``, ``report``, ``report_error``.
    """
    control = control or RunControl()
    sleep_unless_stopped(control, job.start_delay)
    log = Path(job.log)
    # Every file under `out` through `open_inside`: a link planted there is refused, never followed.
    # An empty result (not a stale one from an earlier run) unless the job's process writes one.
    write_inside(job.folder, job.result, "")
    write_inside(job.folder, job.output, "")
    env = {**os.environ, "LENSLLM_NB_STATIC": "1", "PYTHONUNBUFFERED": "1", **job.env}
    started = time.perf_counter()
    with open_inside(job.folder, log) as stream:
        # `python -m lensllm_nb.workflow.batch`: the package's __main__ runs `_child_main`.
        proc = control.popen([sys.executable, "-m", __package__], stdin=subprocess.PIPE, text=True,
                             stdout=stream, stderr=subprocess.STDOUT, env=env, cwd=job.cwd)
        if proc is None:
            return _result(job, "cancelled", 0.0, f"not started: the run was stopped by {control.stopped}")
        try:
            proc.stdin.write(json.dumps(asdict(job)))
            proc.stdin.close()
        except BrokenPipeError:  # the process died at once; its log says why
            pass
        timed_out = wait_or_kill(proc, job.timeout + job.start_timeout + _RENDER_GRACE_S)
        control.release(proc)
    seconds = time.perf_counter() - started
    if timed_out:
        return _finish(job, _result(job, "timeout", seconds,
                                    f"notebook ran past `timeout` = {job.timeout:g} s; raise `timeout` "
                                    "in the grid or give the notebook smaller parameters"))
    if control.stopped:
        return _finish(job, _result(job, "interrupted", seconds, f"stopped by {control.stopped} while running"))
    try:
        result = json.loads(Path(job.result).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _finish(job, _result(job, "failed", seconds,
                                    f"the job's process died without a result: {_last_line(log)}"))
    # The whole job's time: process start, kernel start, execution and report.
    result["seconds"] = round(seconds, 3)
    return result


def _finish(job, result) -> dict:
    """Record the verdict in the executed notebook and render its report."""
    import nbformat

    output = Path(job.output)
    if output.is_file() and output.stat().st_size:
        nb = nbformat.read(output, as_version=4)
    else:
        # The notebook never started (bad kernel, missing file): keep the input with the error.
        nb = nbformat.read(job.notebook, as_version=4)
    # Two durations, labelled apart everywhere: the notebook's cells (papermill's own
    # clock; the report shows it) and the job's wall time (process and kernel start,
    # cells, report; the index and the summary show both).
    result["cells_seconds"] = _cells_seconds(nb)
    nb.metadata["lensllm_nb"] = {"job": job.name, "title": job.name, "status": result["status"],
                                 "error": result["error"], "cells_seconds": result["cells_seconds"],
                                 "parameters": mask_secrets(job.grid_values)}
    write_inside(job.folder, output, nbformat.writes(nb) + "\n")
    try:
        result["report"] = str(render_report(output, job.report, title=job.name, templates=job.templates,
                                             out=job.folder))
    except Exception as exc:  # a report failure must not hide the notebook's own status
        result["report_error"] = f"{type(exc).__name__}: {exc}"
    return result


def _last_line(log: Path) -> str:
    """Return the last non-empty line of a log file."""
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _cells_seconds(nb):
    """The notebook's own execution time (papermill's ``duration``), or None when it never ran."""
    duration = nb.metadata.get("papermill", {}).get("duration")
    return round(float(duration), 3) if isinstance(duration, (int, float)) else None


def _execute(job: Job) -> dict:
    """Run papermill for `job` in this process, retrying kernel-start races."""
    import papermill

    _contain_papermill_writes(job)
    started = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        try:
            papermill.execute_notebook(
                job.notebook, job.output, parameters=job.parameters, kernel_name=job.kernel, language="python",
                cwd=job.cwd, execution_timeout=job.timeout, start_timeout=job.start_timeout,
                progress_bar=False, log_output=False,
                # nbclient keeps the widget state so that reports can draw the widgets.
                store_widget_state=True,
                # The kernel's own start-up log ("Kernel is running over TCP without
                # encryption": the batch's kernels listen on localhost) stays out of job logs.
                extra_arguments=[_KERNEL_LOG_LEVEL],
            )
            return _result(job, "ok", time.perf_counter() - started, attempts=attempt)
        except Exception as exc:
            if attempt <= job.retries and _is_retryable(exc):
                print(f"kernel start failed ({exc}); retry {attempt} of {job.retries}", flush=True)
                time.sleep(2.0 * attempt + random.random())
                continue
            print(f"{type(exc).__name__}: {exc}", flush=True)
            status = "timeout" if _is_cell_timeout(exc) else "failed"
            return _result(job, status, time.perf_counter() - started, _error_line(exc), attempts=attempt)


def _contain_papermill_writes(job: Job) -> None:
    """Route papermill's writes of the executed notebook (it saves as cells run) through `write_inside`.

    papermill picks an I/O handler by path prefix; one registered for this job's
    output path (this process runs one job) writes through no link planted there.
    """
    from papermill.iorw import LocalHandler, papermill_io

    class ContainedHandler(LocalHandler):
        def write(self, buf, path):
            write_inside(job.folder, os.path.abspath(path), buf)

    papermill_io.register(job.output, ContainedHandler())


def _is_retryable(exc) -> bool:
    """Whether `exc` is a kernel-start race worth retrying."""
    if type(exc).__name__ == "ZMQError":
        return True
    return isinstance(exc, (RuntimeError, TimeoutError)) and any(m in str(exc) for m in _RETRYABLE_MESSAGES)


def _is_cell_timeout(exc) -> bool:
    """Whether `exc` is nbclient's error for a cell that ran past `execution_timeout`."""
    return type(exc).__name__ == "CellTimeoutError"


def _error_line(exc) -> str:
    """Return one readable line for an execution error."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return f"{exc.ename}: {exc.evalue} (cell In [{exc.exec_count}])"
    if _is_cell_timeout(exc):
        return (f"{str(exc).strip().splitlines()[0].rstrip('.')}; raise `timeout` in the grid "
                "or give the notebook smaller parameters")
    if type(exc).__name__ == "NoSuchKernel":
        return (f"`kernel` = {exc.args[0] if exc.args else '?'!r} is not registered where the job ran; "
                "run `make kernel` there")
    return f"{type(exc).__name__}: {exc}"


def _child_main() -> None:
    """Entry point of a job's process: read the job from stdin, write its result."""
    die_with_parent()
    job = Job(**json.loads(sys.stdin.read()))
    result = _finish(job, _execute(job))
    write_inside(job.folder, job.result, strict_json(result))
