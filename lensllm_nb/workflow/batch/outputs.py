"""What a batch run leaves: per-job results, the run record, the index page, the summary.

Every job's result masks secrets (`mask_secrets`), the record is strict JSON, and
both the record and the index are written also when the run fails or is stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ...collection.display_names import display_names
from ...collection.store import mask_urls
from ...utils.provenance import run_record
from ...utils.safe_output import mask_secrets, strict_json, write_inside
from ..report import DURATIONS_NOTE, index_answer, write_index

__all__ = ["BatchResult", "format_summary"]


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


def format_summary(results) -> str:
    """Return a plain-text table of job, status, both durations (see `DURATIONS_NOTE`) and error.

    Parameters
    ----------
    results : list of dict
        As in `BatchResult.results`.
    """
    rows = [("job", "status", "cells s", "job s", "error")]
    for result in results:
        error = (result.get("error") or "").replace("\n", " ")
        cells = result.get("cells_seconds")
        rows.append((result["name"], result["status"], "" if cells is None else f"{cells:.1f}",
                     f"{result['seconds']:.1f}", error if len(error) <= 100 else error[:97] + "..."))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                        row[3].rjust(widths[3]), row[4]]).rstrip() for row in rows]
    n_failed = sum(result["status"] != "ok" for result in results)
    lines.append(f"{len(results)} jobs, {n_failed} failed" if n_failed else f"{len(results)} jobs, all ok")
    lines.append(DURATIONS_NOTE)
    return "\n".join(lines)


def _result(job, status, seconds, error=None, attempts=0) -> dict:
    """Return the result dict of `job`."""
    return {"name": job.name, "stage": job.stage, "notebook": job.notebook,
            "parameters": mask_secrets(job.grid_values), "status": status, "seconds": round(seconds, 3),
            "error": mask_secrets(error), "attempts": attempts, "output": job.output, "report": None,
            "report_error": None}


def _batch_result(out, jobs, results, started, control) -> BatchResult:
    """Every job's result in grid order; jobs never reached are `cancelled`."""
    done = {item["name"] for item in results}
    reason = f"not started: the run was stopped by {control.stopped or 'an error'}"
    results = results + [_result(job, "cancelled", 0.0, reason) for job in jobs if job.name not in done]
    order = {job.name: i for i, job in enumerate(jobs)}
    results.sort(key=lambda item: order.get(item["name"], len(order)))
    return BatchResult(out=out, index=out / "index.html", record=out / "run_record.json",
                       results=results, wall_seconds=time.perf_counter() - started, interrupted=control.interrupted)


def _write_outputs(result: BatchResult, grid, config, error) -> None:
    """Write the run record and the index page of a (possibly failed) batch."""
    status = "interrupted" if result.interrupted else "failed" if error or not result.ok else "ok"
    record = run_record("batch", config, status=status, error=error,
                        jobs=result.results, wall_seconds=round(result.wall_seconds, 3))
    write_inside(result.out, result.record.name, strict_json(record, indent=2))
    entries = [{**item, "notebook": item["output"]} for item in _shown_parameters(result.results, grid)]
    write_index(entries, result.index, title=f"lensllm-nb batch: {grid['name']}",
                note=f"Run record: {result.record.name} · {result.wall_seconds:.0f} s in all",
                answer=index_answer(result.results))


def _shown_parameters(results, grid) -> list:
    """The results with each swept path shown by its display name, as the job names are (the record keeps them whole)."""
    overrides = (grid.get("parameters") or {}).get("names") or None
    keys = {key for item in results for key in (item.get("parameters") or {})}
    shown = {key: display_names([v for item in results for k, v in (item.get("parameters") or {}).items()
                                 if k == key and isinstance(v, str)], overrides) for key in keys}
    return [{**item, "parameters": {k: shown[k].get(v, v) if isinstance(v, str) else v
                                    for k, v in (item.get("parameters") or {}).items()}} for item in results]


def _plain(grid) -> dict:
    """Return the grid as JSON-safe plain values (for the run record), URL passwords masked."""
    return mask_urls(json.loads(json.dumps(grid, default=str)))
