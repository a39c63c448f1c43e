"""Batch runs of the parameterized notebooks with papermill, locally or on Dask.

A grid YAML names notebooks and the parameter combinations to run them with (see
``templates/grid.yaml``). `expand_grid` turns it into jobs (`grid`); `run_batch`
runs them stage by stage (`executors`), each in its own process (`execute`), and
writes notebooks, reports, index and run record under ``--out`` (`outputs`);
`control` keeps the job processes from outliving the run.

Details: docs/METHODS.md, section ``lensllm_nb.workflow.batch``.
"""

from .control import StopRun
from .execute import run_job
from .executors import run_batch
from .grid import DEFAULT_KERNEL, DEFAULT_MAX_JOBS, Job, expand_grid, load_grid
from .outputs import BatchResult, format_summary

__all__ = [
    "DEFAULT_KERNEL",
    "DEFAULT_MAX_JOBS",
    "Job",
    "BatchResult",
    "StopRun",
    "load_grid",
    "expand_grid",
    "run_job",
    "run_batch",
    "format_summary",
]
