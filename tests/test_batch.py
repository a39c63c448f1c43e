"""Batch runs: grid expansion, failure isolation, timeouts, Dask parity, run records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from lensllm_nb.cli import main
from lensllm_nb.errors import BatchError, ConfigError
from lensllm_nb.workflow.batch import Job, execute, expand_grid, load_grid, run_batch, run_job

# Writes `value * x` into {out}/x<x>.csv; raises when `fail` is set; draws a figure.
_WRITER = [
    "import csv, pathlib\nimport matplotlib.pyplot as plt",
    "if fail:\n    raise ValueError(f'deliberate failure at x = {x}')\n"
    "with open(pathlib.Path(out_dir) / f'x{x}.csv', 'w', newline='') as f:\n"
    "    csv.writer(f).writerows([['x', 'value'], [x, value * x]])",
    "%matplotlib inline\nfig, ax = plt.subplots(figsize=(2, 2))\nax.plot([0, 1], [0, x])\nplt.show()",
]


def _notebook(path, parameters, cells):
    """Write a notebook with one `parameters` cell followed by `cells`."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test notebook"), params,
                *(nbformat.v4.new_code_cell(source) for source in cells)]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    """A grid of three working jobs and one deliberately failing job."""
    root = tmp_path_factory.mktemp("grid")
    _notebook(root / "writer.ipynb", "x = 0\nvalue = 1\nfail = False\nout_dir = '.'", _WRITER)
    grid = {
        "name": "tiny",
        "timeout": 300,
        "stagger": 0.2,
        "parameters": {"out_dir": "{out}"},
        "jobs": [
            {"notebook": "writer.ipynb", "grid": {"x": [1, 2, 3]}, "parameters": {"value": 10}},
            # gpu: one at a time locally; a Dask resource GPU=1 on the LocalCluster.
            {"notebook": "writer.ipynb", "name": "broken", "gpu": True, "parameters": {"x": 4, "fail": True}},
        ],
    }
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_run(grid_file, tmp_path_factory):
    """The grid run through the CLI with the local executor."""
    out = tmp_path_factory.mktemp("local")
    code = main(["run", str(grid_file), "--out", str(out), "--workers", "2"])
    return code, out


def _written(out) -> dict:
    """What the notebooks of a run wrote: file name -> contents."""
    return {path.name: path.read_text() for path in sorted(Path(out).glob("x*.csv"))}


def test_grid_expands_into_deterministic_named_jobs(grid_file, tmp_path):
    jobs = expand_grid(load_grid(grid_file), out=tmp_path)
    assert [job.name for job in jobs] == ["writer__1", "writer__2", "writer__3", "broken"]
    assert jobs[0].parameters == {"out_dir": str(tmp_path.resolve()), "value": 10, "x": 1}
    assert jobs[3].parameters["fail"] is True and jobs[3].grid_values == {}
    assert all(Path(job.notebook).is_absolute() and Path(job.output).is_absolute() for job in jobs)
    assert jobs[0].kernel == "lensllm-nb"
    assert [job.gpu for job in jobs] == [False, False, False, True]
    again = expand_grid(load_grid(grid_file), out=tmp_path)
    assert [job.name for job in again] == [job.name for job in jobs]


def test_stages_order_jobs_and_repeated_notebooks_get_distinct_names(grid_file, tmp_path):
    grid = {"root": str(grid_file.parent), "jobs": [
        {"notebook": "writer.ipynb", "stage": 2, "grid": {"x": [1]}},
        {"notebook": "writer.ipynb", "stage": 1, "grid": {"x": [1]}, "parameters": {"value": 5}},
    ]}
    jobs = expand_grid(grid, out=tmp_path)
    assert [job.stage for job in jobs] == [1, 2]
    assert len({job.name for job in jobs}) == 2
    assert all(job.name.startswith("writer__1-") for job in jobs)


@pytest.mark.parametrize("change, message", [
    ({"jobs": [{"notebook": "missing.ipynb"}]}, "`notebook`"),
    ({"jobs": [{"notebook": "writer.ipynb", "grid": {"x": 3}}]}, "grid.x"),
    ({"jobs": [{"notebook": "writer.ipynb", "colour": "red"}]}, "unknown keys"),
    ({"jobs": []}, "`jobs`"),
    ({"timeout": -1}, "`timeout`"),
    ({"timeout": 0}, "`timeout`"),
    ({"workers": 0}, "`workers`"),
])
def test_bad_grids_raise_config_errors(grid_file, tmp_path, change, message):
    grid = {**yaml.safe_load(grid_file.read_text()), "root": str(grid_file.parent), **change}
    with pytest.raises(ConfigError, match=message):
        expand_grid(grid, out=tmp_path)


def test_missing_grid_file_is_one_clean_cli_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`grid`" in err[0]


@pytest.mark.slow
def test_failing_notebook_does_not_stop_the_others(local_run, capsys):
    code, out = local_run
    assert code == 1
    assert _written(out) == {f"x{x}.csv": f"x,value\n{x},{10 * x}\n" for x in (1, 2, 3)}

    failed = nbformat.read(out / "notebooks" / "broken.ipynb", as_version=4)
    errors = [o for cell in failed.cells for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert errors and errors[0]["evalue"] == "deliberate failure at x = 4"
    assert failed.metadata["lensllm_nb"]["status"] == "failed"

    for name in ("writer__1", "writer__2", "writer__3", "broken"):
        html = (out / "reports" / f"{name}.html").read_text()
        assert "data:image/png;base64" in html or name == "broken"
    broken = (out / "reports" / "broken.html").read_text()
    assert "lensllm-status-failed" in broken and "deliberate failure at x = 4" in broken
    index = (out / "index.html").read_text()
    assert 'href="reports/broken.html"' in index and "4 notebooks, 1 failed" in index

    record = json.loads((out / "run_record.json").read_text())
    assert record["kind"] == "batch" and record["status"] == "failed"
    assert {job["name"]: job["status"] for job in record["jobs"]} == {
        "writer__1": "ok", "writer__2": "ok", "writer__3": "ok", "broken": "failed"}
    assert "papermill" in record["versions"]


@pytest.mark.slow
def test_summary_table_names_the_failure(grid_file, tmp_path, capsys):
    grid = yaml.safe_load(grid_file.read_text())
    grid["jobs"] = grid["jobs"][1:]
    path = grid_file.parent / "only_broken.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", str(path), "--out", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("broken "))
    assert "failed" in row and "ValueError: deliberate failure at x = 4" in row
    assert "1 jobs, 1 failed" in lines


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_results(grid_file, local_run, tmp_path):
    result = run_batch(grid_file, out=tmp_path, executor="dask", workers=2, log=None)
    assert result.to_frame()["status"].tolist() == ["ok", "ok", "ok", "failed"]
    assert _written(tmp_path) == _written(local_run[1])
    record = json.loads(result.record.read_text())
    assert record["config"]["executor"] == "dask" and record["config"]["workers"] == 2


@pytest.mark.slow
def test_cell_past_its_timeout_is_stopped_and_kept(tmp_path):
    _notebook(tmp_path / "slow.ipynb", "seconds = 60", ["import time\ntime.sleep(seconds)"])
    grid = {"root": str(tmp_path), "timeout": 2, "jobs": [{"notebook": "slow.ipynb"}]}
    result = run_batch(grid, out=tmp_path / "out", log=None)
    (job,) = result.results
    assert job["status"] == "timeout" and "`timeout`" in job["error"]
    assert Path(job["output"]).is_file() and Path(job["report"]).is_file()


@pytest.mark.slow
def test_job_process_past_its_limit_is_killed(tmp_path, monkeypatch):
    # Many short cells never hit the per-cell limit; the job's process limit stops them.
    _notebook(tmp_path / "long.ipynb", "n = 100", ["import time"] + ["time.sleep(0.5)"] * 100)
    monkeypatch.setattr(execute, "_RENDER_GRACE_S", 0)
    grid = {"root": str(tmp_path), "timeout": 4, "start_timeout": 4, "jobs": [{"notebook": "long.ipynb"}]}
    (job,) = expand_grid(grid, out=tmp_path / "out")
    result = run_job(job)
    assert result["status"] == "timeout"
    nb = nbformat.read(result["output"], as_version=4)
    assert nb.metadata["lensllm_nb"]["status"] == "timeout"
    assert Path(result["report"]).is_file()


def test_kernel_start_race_is_retried(tmp_path, monkeypatch):
    import papermill
    import zmq

    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs["kernel_name"])
        if len(calls) == 1:
            raise zmq.ZMQError(98, "Address already in use")

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    monkeypatch.setattr(execute.time, "sleep", lambda seconds: None)
    job = Job(name="j", stage=1, notebook="in.ipynb", parameters={}, grid_values={}, cwd=str(tmp_path),
              output=str(tmp_path / "o.ipynb"), report="r.html", log="l", result="r.json")
    result = execute._execute(job)
    assert result["status"] == "ok" and result["attempts"] == 2
    assert calls == ["lensllm-nb", "lensllm-nb"]


def test_unregistered_kernel_fails_with_a_run_record(grid_file, tmp_path):
    grid = {**yaml.safe_load(grid_file.read_text()), "root": str(grid_file.parent), "kernel": "no-such-kernel"}
    with pytest.raises(BatchError, match="make kernel"):
        run_batch(grid, out=tmp_path, log=None)
    record = json.loads((tmp_path / "run_record.json").read_text())
    assert record["status"] == "failed" and "no-such-kernel" in record["error"]


def test_grid_with_a_missing_notebook_fails_with_a_run_record(grid_file, tmp_path):
    grid = {"root": str(grid_file.parent), "jobs": [{"notebook": "missing.ipynb"}]}
    with pytest.raises(ConfigError, match="missing.ipynb"):
        run_batch(grid, out=tmp_path, log=None)
    record = json.loads((tmp_path / "run_record.json").read_text())
    assert record["status"] == "failed" and "missing.ipynb" in record["error"]


def test_scheduler_needs_the_dask_executor(grid_file, tmp_path):
    with pytest.raises(ConfigError, match="--executor dask"):
        run_batch(grid_file, out=tmp_path, scheduler="tcp://127.0.0.1:8786")


@pytest.mark.parametrize("name", ["grid.yaml", "grid_gpu_hub.yaml"])
def test_example_grids_expand(name, tmp_path):
    jobs = expand_grid(load_grid(Path(__file__).resolve().parents[1] / "templates" / name), out=tmp_path)
    assert [job.stage for job in jobs] == sorted(job.stage for job in jobs)
    assert {Path(job.notebook).name for job in jobs} == {
        "01_finetune_subsets.ipynb", "02_fit_phase_law.ipynb", "03_select_models.ipynb", "04_benchmark.ipynb"}
    assert all(job.parameters["store"] == str(tmp_path.resolve() / "results.db") for job in jobs)
    root = Path(__file__).resolve().parents[1]
    # Every file the grid's comments point to exists.
    for ref in re.findall(r"(?:docs/)?[\w-]+\.md", (root / "templates" / name).read_text()):
        assert (root / ref).is_file(), ref
    if name == "grid.yaml":
        # Offline as documented: notebook 04 downloads nothing unless sets are added.
        (bench,) = [job for job in jobs if Path(job.notebook).stem == "04_benchmark"]
        assert bench.parameters["sets"] == [] and bench.parameters["store"]
    if name == "grid_gpu_hub.yaml":
        models = [job.parameters["model"] for job in jobs if job.stage == 1]
        assert models == ["gpt2", "facebook/opt-350m", "t5-base"]
        assert all(job.gpu for job in jobs if job.stage == 1)


def test_demo_selects_on_the_selection_sizes_and_holds_the_full_runs_out(tmp_path):
    from lensllm_nb.collection import zoo
    from lensllm_nb.workflow.demo import PROGRESSIVE_BUDGET, demo_grid

    assert zoo.FULL_SIZE >= 16 * zoo.SELECTION_MAX_TRAIN
    jobs = expand_grid(demo_grid(candidates=["zoo/gpt2-tiny"], sets=[]), out=tmp_path)
    (finetune,) = [job for job in jobs if job.stage == 1]
    assert finetune.parameters["sizes"] == list(zoo.SELECTION_SIZES)
    assert finetune.parameters["full_sizes"] == [zoo.FULL_SIZE]
    stage2 = {Path(job.notebook).stem: job.parameters for job in jobs if job.stage == 2}
    for name in ("02_fit_phase_law", "03_select_models"):
        assert stage2[name]["max_train"] == zoo.SELECTION_MAX_TRAIN < zoo.FULL_SIZE == stage2[name]["target"]
    assert stage2["03_select_models"]["progressive_budget"] == PROGRESSIVE_BUDGET <= 0.05
    # Notebook 04 only ever sees budgets of the selection sizes.
    assert all(zoo.FULL_SIZE // ratio <= zoo.SELECTION_MAX_TRAIN for ratio in stage2["04_benchmark"]["store_ratios"])
    assert [job.stage for job in expand_grid(demo_grid(candidates=[], sets=[]), out=tmp_path)] == [2, 2, 2]


# ---------------------------------------------------------------- hardening (issue 9)

def test_misspelt_grid_parameter_is_refused(tmp_path):
    _notebook(tmp_path / "nb.ipynb", "x = 0\nvalue = 1", ["print(x)"])
    grid = {"root": str(tmp_path), "jobs": [{"notebook": "nb.ipynb", "parameters": {"valeu": 3}}]}
    with pytest.raises(ConfigError, match=r"\['valeu'\].*does not declare"):
        expand_grid(grid, out=tmp_path / "out")
    grid["jobs"][0] = {"notebook": "nb.ipynb", "grid": {"xx": [1, 2]}}
    with pytest.raises(ConfigError, match="xx"):
        expand_grid(grid, out=tmp_path / "out")


def test_job_name_cannot_climb_out_of_out(tmp_path):
    _notebook(tmp_path / "nb.ipynb", "x = 0", ["print(x)"])
    out = (tmp_path / "out").resolve()
    for name in ("../../evil", "/abs/evil", "org/name", ".."):
        grid = {"root": str(tmp_path), "jobs": [{"notebook": "nb.ipynb", "name": name}]}
        (job,) = expand_grid(grid, out=out)
        for path in (job.output, job.report, job.log, job.result):
            assert out in Path(path).resolve().parents, (name, path)


def test_non_utf8_grid_is_one_clean_cli_error(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_bytes(b"jobs:\n  - notebook: \xff\xfe.ipynb\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "UTF-8" in err[0]


def test_second_runner_on_the_same_out_is_refused(grid_file, tmp_path):
    from lensllm_nb.workflow.batch.control import lock_folder

    with lock_folder(tmp_path):
        with pytest.raises(BatchError, match="in use by another run"):
            run_batch(grid_file, out=tmp_path, log=None)
    assert not (tmp_path / "run_record.json").exists()  # the first runner's record is not overwritten


def test_unwritable_out_is_one_clean_cli_error(grid_file, tmp_path, capsys):
    # Under a regular file no folder can be made, even for root (the sandbox runs tests as root).
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(grid_file), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]


def _processes_with(marker) -> list[int]:
    """Pids of live processes whose environment holds `marker` (the run's jobs and kernels)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def _start_sleepy_run(tmp_path, marker):
    """Start `lensllm-nb run` on two 60 s notebooks, one at a time; wait until the first runs."""
    import os
    import subprocess
    import sys
    import time

    _notebook(tmp_path / "sleepy.ipynb", "seconds = 60\nflag = 'started'",
              ["import pathlib, time\npathlib.Path(flag).write_text('x')\ntime.sleep(seconds)"])
    flag = tmp_path / "started"
    grid = {"root": str(tmp_path), "workers": 1, "stagger": 0, "env": {"LENSLLM_TEST_MARK": marker},
            "jobs": [{"notebook": "sleepy.ipynb", "grid": {"seconds": [60, 61]}, "parameters": {"flag": str(flag)}}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid), encoding="utf-8")
    runner = subprocess.Popen([sys.executable, "-m", "lensllm_nb.cli", "run", str(tmp_path / "grid.yaml"),
                               "--out", str(tmp_path / "out")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env={**os.environ})
    deadline = time.monotonic() + 120
    while not flag.exists() and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.2)
    assert flag.exists(), "the first notebook never started"
    return runner


def _wait_gone(marker, seconds=20) -> list[int]:
    import time

    deadline = time.monotonic() + seconds
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _processes_with(marker)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_run_stops_jobs_and_records_every_status(tmp_path, sig, code):
    import signal
    import uuid

    marker = f"stop-{uuid.uuid4().hex}"
    runner = _start_sleepy_run(tmp_path, marker)
    runner.send_signal(getattr(signal, sig))
    _, err = runner.communicate(timeout=90)
    assert runner.returncode == code, err
    assert _wait_gone(marker) == []  # job processes and their kernels are gone
    record = json.loads((tmp_path / "out" / "run_record.json").read_text())
    assert record["status"] == "interrupted"
    assert [job["status"] for job in record["jobs"]] == ["interrupted", "cancelled"]
    index = (tmp_path / "out" / "index.html").read_text()
    assert "2 notebooks, 2 failed" in index and "cancelled" in index


@pytest.mark.slow
def test_job_processes_die_with_a_killed_runner(tmp_path):
    import signal
    import uuid

    marker = f"kill-{uuid.uuid4().hex}"
    runner = _start_sleepy_run(tmp_path, marker)
    assert len(_processes_with(marker)) >= 2  # the job's process and its kernel
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    assert _wait_gone(marker) == []


def test_swept_paths_name_jobs_by_their_display_names(tmp_path):
    _notebook(tmp_path / "tune.ipynb", "model = ''\nnames = {}", ["print(model)"])
    models = ["{root}/m/a/gpt2", "{root}/m/b/gpt2", "{root}/m/llama", "zoo/gpt2-tiny"]
    grid = {"root": str(tmp_path), "jobs": [{"notebook": "tune.ipynb", "grid": {"model": models}}]}
    names = [job.name for job in expand_grid(grid, out=tmp_path / "out")]
    assert names == ["tune__a-gpt2", "tune__b-gpt2", "tune__llama", "tune__zoo-gpt2-tiny"]
    grid["parameters"] = {"names": {"m/llama": "Llama 2"}}  # the notebooks' own override names the job too
    (_, _, job, _) = expand_grid(grid, out=tmp_path / "out")
    assert job.name == "tune__Llama-2" and job.parameters["model"] == f"{tmp_path}/m/llama"  # the full path runs
    grid["parameters"] = {"names": {"{root}/m/llama": "Llama 2"}}  # keys written with {root} match too
    (_, _, job, _) = expand_grid(grid, out=tmp_path / "out")
    assert job.name == "tune__Llama-2" and job.parameters["names"] == {f"{tmp_path}/m/llama": "Llama 2"}


def test_durations_are_labelled_apart_in_the_summary_and_the_index(tmp_path):
    from lensllm_nb.workflow.batch import format_summary
    from lensllm_nb.workflow.report import DURATIONS_NOTE, write_index

    results = [{"name": "a", "status": "ok", "seconds": 41.5, "cells_seconds": 20.5, "error": None}]
    lines = format_summary(results).splitlines()
    assert lines[0].split() == ["job", "status", "cells", "s", "job", "s", "error"]
    assert lines[1].split() == ["a", "ok", "20.5", "41.5"] and lines[-1] == DURATIONS_NOTE
    index = write_index(results, tmp_path / "index.html").read_text()
    assert "<th>cells s</th><th>job s</th>" in index and "<td>20.5</td><td>41.5</td>" in index
    assert DURATIONS_NOTE in index

