"""Batch runs of the parameterized notebooks with papermill, locally or on Dask.

A grid YAML names notebooks and the parameter combinations to run them with
(see ``templates/grid.yaml``). `expand_grid` turns it into deterministic jobs;
`run_batch` executes them and writes into ``--out``::

    out/index.html            links every report with its status
    out/run_record.json       config, versions, per-job status, time and error
    out/notebooks/NAME.ipynb  executed notebooks (failed ones keep their error)
    out/reports/NAME.html     one self-contained HTML report per notebook
    out/logs/NAME.log         the output of the process that ran the job

Each job runs papermill in its own Python process: papermill's ``cwd=`` changes the
working directory of the whole process, so threads sharing one process are unsafe,
and a separate process can be killed when the notebook runs past its time limit.
The local executor waits on those processes from a thread pool; the Dask executor
submits the same `run_job` to ``dask.distributed`` workers (a `LocalCluster`, or an
existing scheduler such as one started by dask-jobqueue or dask-kubernetes).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..collection.store import check_dask_store, mask_urls
from ..errors import BatchError, ConfigError
from ..utils.provenance import config_hash, run_record
from ..utils.safe_output import mask_secrets, open_inside, path_inside, safe_filename, strict_json, write_inside
from .batch_control import RunControl, StopRun, die_with_parent, lock_folder, sleep_unless_stopped, wait_or_kill
from .report import find_templates, index_answer, render_report, write_index

__all__ = [
    "DEFAULT_KERNEL",
    "DEFAULT_MAX_JOBS",
    "Job",
    "BatchResult",
    "load_grid",
    "expand_grid",
    "run_job",
    "run_batch",
    "format_summary",
]

DEFAULT_KERNEL = "lensllm-nb"
# Jobs a grid may expand to unless its `max_jobs` (or --max-jobs) says more: counted before expanding.
DEFAULT_MAX_JOBS = 10_000
# Values (scalars, lists, mappings, aliases counted as often as they are used) a grid may hold:
# a YAML alias bomb ("billion laughs") is refused before it is expanded.
_MAX_GRID_VALUES = 1_000_000

_TOP_KEYS = {"name", "root", "kernel", "workers", "timeout", "start_timeout", "retries",
             "stagger", "gpu", "env", "parameters", "jobs", "max_jobs"}
_JOB_KEYS = {"notebook", "name", "stage", "grid", "parameters", "timeout", "gpu", "env"}
_DEFAULTS = {"kernel": DEFAULT_KERNEL, "workers": 2, "timeout": 3600, "start_timeout": 120,
             "retries": 3, "stagger": 1.0, "gpu": False, "max_jobs": DEFAULT_MAX_JOBS}
# Seconds a job's process gets, beyond its kernel's start and run, to render the report.
_RENDER_GRACE_S = 60
# Kernel-start failures worth a retry: two kernels racing for the same ports.
_RETRYABLE_MESSAGES = ("Kernel died before replying to kernel_info", "Kernel didn't respond",
                       "Address already in use")
_MAX_NAME = 96


@dataclass(frozen=True)
class Job:
    """One notebook execution of a batch, with absolute paths only.

    Attributes
    ----------
    name : str
        Deterministic, file-name safe name (notebook stem and grid values).
    stage : int
        Jobs of a lower stage all finish before a higher stage starts.
    notebook : str
        The input notebook.
    parameters : dict
        Values papermill injects into the ``parameters`` cell.
    grid_values : dict
        The swept parameters that distinguish this job (shown in the index).
    cwd, output, report, log, result : str
        Working directory of the kernel; executed notebook; HTML report; process
        log; the JSON result the job's process writes.
    kernel : str
        Registered Jupyter kernel name (passed to papermill explicitly).
    timeout, start_timeout : float
        Seconds the notebook may run; seconds its kernel may take to start. Each cell
        is stopped at `timeout` by papermill; the job's whole process is stopped at
        ``timeout + start_timeout`` plus a minute for the report.
    retries : int
        Kernel-start retries after port races (``ZMQError``) or dead-on-start kernels.
    gpu : bool
        Whether the job needs a GPU (Dask resource ``GPU=1``; one at a time locally).
    env : dict
        Extra environment variables for the job's process and kernel.
    templates : str
        The report template folder.
    start_delay : float
        Seconds to wait before starting, so that kernels do not all start at once.
    out : str
        The output folder: every file of the job is written inside it, through no
        link (see `lensllm_nb.utils.safe_output.open_inside`). Default: the folder of `output`.
    """

    name: str
    stage: int
    notebook: str
    parameters: dict
    grid_values: dict
    cwd: str
    output: str
    report: str
    log: str
    result: str
    kernel: str = DEFAULT_KERNEL
    timeout: float = 3600
    start_timeout: float = 120
    retries: int = 3
    gpu: bool = False
    env: dict = field(default_factory=dict)
    templates: str = ""
    start_delay: float = 0.0
    out: str = ""

    @property
    def folder(self) -> str:
        """The folder every file of the job stays inside: `out`, else the folder of `output`."""
        return self.out or str(Path(self.output).parent)


@dataclass
class BatchResult:
    """What a batch run produced.

    Attributes
    ----------
    out : Path
        The output folder.
    index : Path
        ``out/index.html``.
    record : Path
        ``out/run_record.json``.
    results : list of dict
        Per job: ``name``, ``stage``, ``notebook``, ``parameters``, ``status``
        (``ok``, ``failed``, ``timeout``, ``interrupted`` or ``cancelled``), ``seconds``, ``error``, ``attempts``,
        ``output``, ``report``, ``report_error``.
    wall_seconds : float
        Wall time of the whole run.
    interrupted : str or None
        The signal that stopped the run (``"SIGINT"``, ``"SIGTERM"``), else None.
    """

    out: Path
    index: Path
    record: Path
    results: list
    wall_seconds: float
    interrupted: str | None = None

    @property
    def n_failed(self) -> int:
        """Number of jobs that did not finish with status ``ok``."""
        return sum(result["status"] != "ok" for result in self.results)

    @property
    def ok(self) -> bool:
        """Whether every job finished."""
        return self.n_failed == 0

    def to_frame(self):
        """Return the per-job results as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.results)

    def summary(self) -> str:
        """Return the plain-text summary table (see `format_summary`)."""
        return format_summary(self.results)


def load_grid(path) -> dict:
    """Read and validate a grid YAML file.

    Parameters
    ----------
    path : str or Path
        The grid file. Relative paths inside it resolve against its ``root`` key,
        which itself is relative to the file's folder (default: that folder).

    Returns
    -------
    dict
        The validated grid with ``root`` made absolute.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, repeats a key, holds a value that is
        not plain JSON (a date, ``!!binary``), expands past ``_MAX_GRID_VALUES``
        values through aliases, or has unknown or ill-typed keys.
    """
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"`grid` = {str(path)!r} does not exist; pass a grid YAML such as templates/grid.yaml")
    try:
        grid = _parse_yaml(path.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"`grid` = {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"`grid` = {str(path)!r} is not valid YAML ({detail}); fix the file") from exc
    except RecursionError:
        raise ConfigError(f"`grid` = {str(path)!r} nests lists or mappings too deeply; flatten the file") from None
    if not isinstance(grid, dict):
        raise ConfigError(f"`grid` = {str(path)!r} holds {type(grid).__name__}; it must be a mapping with a `jobs` list")
    grid = dict(grid)
    grid["root"] = str((path.parent / str(grid.get("root") or ".")).resolve())
    grid.setdefault("name", path.stem)
    return _validate_grid(grid)


def expand_grid(grid, *, out, max_jobs=None) -> list[Job]:
    """Expand a grid into jobs: every notebook × every combination of its sweeps.

    Parameters
    ----------
    grid : dict or str or Path
        A grid mapping (``root`` defaults to the current folder) or a grid file.
    out : str or Path
        The output folder; the placeholder ``{out}`` in string parameters becomes
        its absolute path, ``{root}`` the grid's root.
    max_jobs : int, optional
        The most jobs the grid may expand to. Default: the grid's ``max_jobs``
        (`DEFAULT_MAX_JOBS`). Counted from the sweep lengths before expanding.

    Returns
    -------
    list of Job
        In stage order, then file order; names are unique and deterministic.

    Raises
    ------
    ConfigError
        When the grid would expand past `max_jobs`, a notebook lies outside
        ``root``, or a parameter name is not declared in its notebook's
        ``parameters`` cell (names are written into the notebook as code).
    """
    from itertools import product

    grid = load_grid(grid) if isinstance(grid, (str, Path)) else _validate_grid(grid)
    root = Path(grid["root"])
    if not root.is_dir():
        raise ConfigError(f"grid `root` = {str(root)!r} is not a folder; fix `root` (relative to the grid file)")
    _check_job_count(grid, grid["max_jobs"] if max_jobs is None else max_jobs)
    out = Path(out).expanduser().resolve()
    templates = str(find_templates())
    places = {"{out}": str(out), "{root}": str(root)}
    drafts = []
    for spec in grid["jobs"]:
        notebook = _notebook_path(root, spec)
        sweeps = spec.get("grid") or {}
        _check_parameter_names(notebook, spec, grid.get("parameters"))
        for values in product(*sweeps.values()):
            grid_values = dict(zip(sweeps, values))
            parameters = {**grid.get("parameters", {}), **spec.get("parameters", {}), **grid_values}
            # A `name:` from the grid names files: sanitized, so '../x' cannot climb out of `out`.
            prefix = safe_filename(spec.get("name") or notebook.stem, fallback="job")
            drafts.append({
                # Secrets masked before naming: no password in a job, file or page name.
                "base": "__".join([prefix, *(_slug(value) for value in mask_secrets(grid_values).values())]),
                "stage": int(spec.get("stage", 1)),
                "notebook": str(notebook),
                "parameters": _substitute(parameters, places),
                "grid_values": grid_values,
                "timeout": float(spec.get("timeout", grid["timeout"])),
                "gpu": bool(spec.get("gpu", grid["gpu"])),
                "env": {**grid.get("env", {}), **spec.get("env", {})},
            })
    names = _unique_names(drafts)
    jobs = []
    for draft, name in zip(drafts, names):
        jobs.append(Job(
            name=name, stage=draft["stage"], notebook=draft["notebook"],
            parameters=draft["parameters"], grid_values=draft["grid_values"], cwd=str(root),
            **_job_paths(out, name),
            kernel=grid["kernel"], timeout=draft["timeout"], start_timeout=float(grid["start_timeout"]),
            retries=int(grid["retries"]), gpu=draft["gpu"],
            env={str(k): str(v) for k, v in draft["env"].items()}, templates=templates, out=str(out),
        ))
    return sorted(jobs, key=lambda job: job.stage)


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
        proc = control.popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, text=True,
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


def _batch_result(out, jobs, results, started, control) -> BatchResult:
    """Every job's result in grid order; jobs never reached are `cancelled`."""
    done = {item["name"] for item in results}
    reason = f"not started: the run was stopped by {control.stopped or 'an error'}"
    results = results + [_result(job, "cancelled", 0.0, reason) for job in jobs if job.name not in done]
    order = {job.name: i for i, job in enumerate(jobs)}
    results.sort(key=lambda item: order.get(item["name"], len(order)))
    return BatchResult(out=out, index=out / "index.html", record=out / "run_record.json",
                       results=results, wall_seconds=time.perf_counter() - started, interrupted=control.interrupted)


def format_summary(results) -> str:
    """Return a plain-text table of job, status, seconds and error.

    Parameters
    ----------
    results : list of dict
        As in `BatchResult.results`.
    """
    rows = [("job", "status", "seconds", "error")]
    for result in results:
        error = (result.get("error") or "").replace("\n", " ")
        rows.append((result["name"], result["status"], f"{result['seconds']:.1f}",
                     error if len(error) <= 100 else error[:97] + "..."))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3]]).rstrip()
             for row in rows]
    n_failed = sum(result["status"] != "ok" for result in results)
    lines.append(f"{len(results)} jobs, {n_failed} failed" if n_failed else f"{len(results)} jobs, all ok")
    return "\n".join(lines)


# ---------------------------------------------------------------- grid handling

def _validate_grid(grid) -> dict:
    """Return a copy of `grid` with defaults filled in, or raise `ConfigError`."""
    if not isinstance(grid, dict):
        raise ConfigError(f"`grid` has type {type(grid).__name__}; pass a mapping or a grid YAML path")
    # Up front, so that a date or bytes fails here (exit 2), not in a running job.
    _check_plain(grid, lambda: "", [_MAX_GRID_VALUES])
    grid = {**_DEFAULTS, **copy.deepcopy(grid)}
    grid["root"] = str(Path(grid.get("root") or os.getcwd()).expanduser().resolve())
    grid.setdefault("name", "batch")
    unknown = sorted(set(grid) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"grid keys {unknown} are unknown; use only {sorted(_TOP_KEYS)}")
    for key in ("parameters", "env"):
        if not isinstance(grid.get(key, {}), dict):
            raise ConfigError(f"grid `{key}` = {grid[key]!r} must be a mapping of name: value")
    for key in ("timeout", "start_timeout", "stagger"):
        value = grid[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and key != "stagger"):
            raise ConfigError(f"grid `{key}` = {value!r} must be a {'non-negative' if key == 'stagger' else 'positive'} "
                              "number of seconds")
    for key in ("workers", "retries", "max_jobs"):
        if isinstance(grid[key], bool) or not isinstance(grid[key], int) or grid[key] < (0 if key == "retries" else 1):
            raise ConfigError(f"grid `{key}` = {grid[key]!r} must be an integer ≥ {0 if key == 'retries' else 1}")
    jobs = grid.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"grid `jobs` = {jobs!r} must be a non-empty list of {{notebook: ..., grid: ...}} entries")
    for i, spec in enumerate(jobs):
        _validate_job_spec(i, spec)
    return grid


def _validate_job_spec(i, spec) -> None:
    """Raise `ConfigError` when the `i`-th job entry is malformed."""
    where = f"grid `jobs[{i}]`"
    if not isinstance(spec, dict) or "notebook" not in spec:
        raise ConfigError(f"{where} = {spec!r} must be a mapping with a `notebook` path")
    unknown = sorted(set(spec) - _JOB_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; use only {sorted(_JOB_KEYS)}")
    for key in ("parameters", "env", "grid"):
        if not isinstance(spec.get(key) or {}, dict):
            raise ConfigError(f"{where}.{key} = {spec[key]!r} must be a mapping")
    for key, values in (spec.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where}.grid.{key} = {values!r} must be a non-empty list of values to sweep; "
                f"put a fixed value under `parameters` instead"
            )
    if not isinstance(spec.get("stage", 1), int):
        raise ConfigError(f"{where}.stage = {spec['stage']!r} must be an integer")
    if "timeout" in spec and (not isinstance(spec["timeout"], (int, float)) or spec["timeout"] <= 0):
        raise ConfigError(f"{where}.timeout = {spec['timeout']!r} must be a positive number of seconds")


def _parse_yaml(text, path):
    """Compose the YAML, refuse an alias bomb by its expanded size, then construct it (duplicate keys refused)."""
    loader = _grid_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > _MAX_GRID_VALUES:
            raise ConfigError(f"`grid` = {str(path)!r} expands to more than {_MAX_GRID_VALUES:,} values (YAML "
                              "aliases repeating one value many times?); write a smaller grid")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _grid_loader():
    """A `yaml.SafeLoader` that refuses a key repeated in one mapping (instead of keeping the last)."""
    import yaml

    class GridLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in seen:
                        raise yaml.constructor.ConstructorError(
                            "while reading a mapping", node.start_mark,
                            f"found the key {key.value!r} twice (remove one)", key.start_mark)
                    seen.add((key.tag, key.value))
            return super().construct_mapping(node, deep=deep)

    return GridLoader


def _expanded_size(node, sizes) -> int:
    """Number of values `node` stands for once every alias is expanded, each distinct node visited once."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise ConfigError("`grid` holds a YAML alias that refers to itself; write the value out")
        return sizes[key]
    sizes[key] = None
    children = node.value if isinstance(node.value, list) else []
    size = 1
    for child in children:
        for item in (child if isinstance(child, tuple) else (child,)):
            size += _expanded_size(item, sizes)
            if size > _MAX_GRID_VALUES:  # stop counting: the answer is "too many"
                break
    sizes[key] = size
    return size


def _check_plain(value, where, budget) -> None:
    """Refuse a value that is not plain JSON (string, finite number, bool, null, list, string-keyed mapping).

    `budget` (a one-item list) counts the values visited, so a grid built in Python
    whose lists share one another (an alias bomb without YAML) is refused too.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"the grid holds more than {_MAX_GRID_VALUES:,} values; write a smaller grid")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"grid `{where()}` has the key {key!r} ({type(key).__name__}); "
                                  "keys must be strings: quote it")
            _check_plain(item, lambda: f"{where()}.{key}".lstrip("."), budget)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, lambda: f"{where()}[{i}]", budget)
    elif value is not None and not isinstance(value, (str, int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"grid `{where()}` = {value!r} ({type(value).__name__}) is not a plain JSON value "
                          "(string, finite number, true/false, null, list or mapping); quote it, e.g. \"2024-01-31\"")


def _job_paths(out, name) -> dict:
    """The output, report, log and result files of job `name` under `out`.

    Names are built from sanitized parts (`safe_filename`, `_slug`), so they are one
    path component; checked here without resolving (10,000 jobs, 40,000 paths).
    Links on the way are refused when the files are written (`open_inside`).
    """
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"job name {name!r} would write outside `out` ({out}); use a plain name")
    return {"output": str(out / "notebooks" / f"{name}.ipynb"), "report": str(out / "reports" / f"{name}.html"),
            "log": str(out / "logs" / f"{name}.log"), "result": str(out / "logs" / f"{name}.result.json")}


def _check_job_count(grid, limit) -> None:
    """Refuse a grid whose sweeps multiply past `limit` jobs, before any job is expanded."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"`max_jobs` = {limit!r} must be a positive integer")
    total = sum(math.prod(len(values) for values in (spec.get("grid") or {}).values()) for spec in grid["jobs"])
    if total > limit:
        raise ConfigError(f"the grid expands to {total:,} jobs, above `max_jobs` = {limit:,}; sweep fewer values "
                          "or split the grid, or raise `max_jobs` in the grid (or --max-jobs) if you mean it")


def _notebook_path(root, spec) -> Path:
    """The job's notebook, resolved; refused when missing or outside `root` (links resolved)."""
    notebook = (root / spec["notebook"]).resolve()
    if not notebook.is_relative_to(root):
        raise ConfigError(f"`notebook` = {spec['notebook']!r} resolves to {str(notebook)!r}, outside the grid's "
                          f"root {str(root)!r}; keep notebooks under `root` (or move `root` up)")
    if not notebook.is_file():
        raise ConfigError(
            f"`notebook` = {spec['notebook']!r} does not exist under root {str(root)!r}; "
            "fix the path in the grid (paths are relative to `root`)"
        )
    return notebook


def _check_parameter_names(notebook, spec, shared) -> None:
    """Refuse parameter names that are not identifiers declared in the notebook's ``parameters`` cell.

    papermill writes each name into the notebook as code (``name = value``), so a
    name such as ``"a = 1; __import__('os').system(...) #"`` would run; and a
    misspelt one (``max_trian``) would be ignored silently while the job reports ok.
    Grid-level `shared` parameters go to every notebook, so every notebook must declare them.
    """
    import difflib
    import keyword

    declared = _declared_parameters(notebook)
    for where, names in (("grid-level `parameters`", shared), ("`parameters`", spec.get("parameters")),
                         ("`grid`", spec.get("grid"))):
        bad = [name for name in names or {} if not name.isidentifier() or keyword.iskeyword(name)]
        if bad:
            raise ConfigError(f"{where} of job {spec['notebook']!r} has parameter name(s) {bad} that are not Python "
                              "identifiers; a name is a variable of the notebook's `parameters` cell (letters, digits, _)")
        unknown = [name for name in names or {} if name not in declared]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(declared), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            shared_hint = " (grid-level parameters go to every notebook: set it per job instead)" if shared is names else ""
            raise ConfigError(f"{where} of job {spec['notebook']!r} sets parameter(s) {unknown} that the notebook does "
                              f"not declare; {hint}its `parameters` cell declares {sorted(declared)}{shared_hint}")


def _declared_parameters(notebook) -> set:
    """Names assigned in the notebook's ``parameters``-tagged cell (IPython magics allowed there)."""
    import ast

    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # nbformat raises several types for a broken file
        raise ConfigError(f"`notebook` = {str(notebook)!r} is not a readable notebook ({type(exc).__name__}); "
                          "fix the path in the grid") from None
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            try:
                tree = ast.parse(_python_source(cell.source))
            except SyntaxError as exc:
                raise ConfigError(f"the `parameters` cell of `notebook` = {str(notebook)!r} is not Python (line "
                                  f"{exc.lineno}: {exc.msg}), so its parameter names cannot be known; fix the cell") from None
            names = set()
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                # `a, b = 1, 2` declares both names.
                names.update(t.id for target in targets if target is not None
                             for t in ast.walk(target) if isinstance(t, ast.Name))
            return names
    return set()


def _python_source(source) -> str:
    """The cell as plain Python: IPython's own transformer turns magics (``%matplotlib``, ``!ls``) into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _slug(value) -> str:
    """Return a file-name safe rendering of a parameter value."""
    if isinstance(value, (list, tuple)):
        value = "-".join(str(v) for v in value)
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-.")
    return text or "x"


def _unique_names(drafts) -> list[str]:
    """Return one unique, deterministic name per draft job.

    Long names are shortened with a hash; names shared by several jobs (the same
    notebook listed twice with other fixed parameters) get a parameter hash.
    """
    from collections import Counter

    names = []
    for draft in drafts:
        base = draft["base"]
        if len(base) > _MAX_NAME:
            base = f"{base[:_MAX_NAME - 9]}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"
        names.append(base)
    # Counted once (linear); names.count per name would be quadratic in the number of jobs.
    counts = Counter(names)
    names = [f"{name}-{config_hash(draft['parameters'])[:8]}" if counts[name] > 1 else name
             for name, draft in zip(names, drafts)]
    counts = Counter(names)
    if len(counts) != len(names):
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        raise ConfigError(f"grid `jobs` repeat the same notebook with the same parameters: {duplicates}; remove the duplicates")
    return names


def _substitute(value, places):
    """Replace ``{out}`` and ``{root}`` in every string of a nested value."""
    if isinstance(value, str):
        for token, replacement in places.items():
            value = value.replace(token, replacement)
        return value
    if isinstance(value, list):
        return [_substitute(item, places) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, places) for key, item in value.items()}
    return value


def _plain(grid) -> dict:
    """Return the grid as JSON-safe plain values (for the run record), URL passwords masked."""
    return mask_urls(json.loads(json.dumps(grid, default=str)))


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


# ---------------------------------------------------------------- executors

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
            log(f"[{count[0]}/{total}] {result['status']:<7} {result['name']}  {result['seconds']:.1f} s")

    return report


# ---------------------------------------------------------------- outputs

def _write_outputs(result: BatchResult, grid, config, error) -> None:
    """Write the run record and the index page of a (possibly failed) batch."""
    status = "interrupted" if result.interrupted else "failed" if error or not result.ok else "ok"
    record = run_record("batch", config, status=status, error=error,
                        jobs=result.results, wall_seconds=round(result.wall_seconds, 3))
    write_inside(result.out, result.record.name, strict_json(record, indent=2))
    entries = [{**item, "notebook": item["output"]} for item in result.results]
    write_index(entries, result.index, title=f"lensllm-nb batch: {grid['name']}",
                note=f"Run record: {result.record.name} · {result.wall_seconds:.0f} s in all",
                answer=index_answer(result.results))


def _result(job, status, seconds, error=None, attempts=0) -> dict:
    """Return the result dict of `job`."""
    return {"name": job.name, "stage": job.stage, "notebook": job.notebook,
            "parameters": mask_secrets(job.grid_values), "status": status, "seconds": round(seconds, 3),
            "error": mask_secrets(error), "attempts": attempts, "output": job.output, "report": None,
            "report_error": None}


def _last_line(log: Path) -> str:
    """Return the last non-empty line of a log file."""
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _finish(job, result) -> dict:
    """Record the verdict in the executed notebook and render its report."""
    import nbformat

    output = Path(job.output)
    if output.is_file() and output.stat().st_size:
        nb = nbformat.read(output, as_version=4)
    else:
        # The notebook never started (bad kernel, missing file): keep the input with the error.
        nb = nbformat.read(job.notebook, as_version=4)
    nb.metadata["lensllm_nb"] = {"job": job.name, "title": job.name, "status": result["status"],
                                 "error": result["error"], "seconds": result["seconds"],
                                 "parameters": mask_secrets(job.grid_values)}
    write_inside(job.folder, output, nbformat.writes(nb) + "\n")
    try:
        result["report"] = str(render_report(output, job.report, title=job.name, templates=job.templates,
                                             out=job.folder))
    except Exception as exc:  # a report failure must not hide the notebook's own status
        result["report_error"] = f"{type(exc).__name__}: {exc}"
    return result


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


def _is_cell_timeout(exc) -> bool:
    """Whether `exc` is nbclient's error for a cell that ran past `execution_timeout`."""
    return type(exc).__name__ == "CellTimeoutError"


def _is_retryable(exc) -> bool:
    """Whether `exc` is a kernel-start race worth retrying."""
    if type(exc).__name__ == "ZMQError":
        return True
    return isinstance(exc, (RuntimeError, TimeoutError)) and any(m in str(exc) for m in _RETRYABLE_MESSAGES)


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


def _child_main() -> None:
    """Entry point of a job's process: read the job from stdin, write its result."""
    die_with_parent()
    job = Job(**json.loads(sys.stdin.read()))
    result = _finish(job, _execute(job))
    write_inside(job.folder, job.result, strict_json(result))


if __name__ == "__main__":
    _child_main()
