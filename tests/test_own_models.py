"""Your own models and data, end to end (issue 21): templates/own_models.yaml through `lensllm-nb run`.

Three tiny local models of different architectures and a JSONL task with its own
column names (tests/own_models.py); the grid runs unchanged. Short names must reach
job names, legends and the index's answer, each model must keep one colour across
the figures of notebooks 02 and 03, and the store must keep the full paths.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from own_models import MODELS, legend_colours

pytestmark = pytest.mark.slow


def _full_paths(run) -> list:
    return [*run.models.values(), run.dataset]


def test_the_template_runs_and_names_jobs_by_short_names(own_models_run):
    run = own_models_run
    assert run.code == 0, run.stdout
    record = json.loads((run.out / "run_record.json").read_text())
    names = sorted(job["name"] for job in record["jobs"])
    assert names == sorted([f"01_finetune_subsets__{m}" for m in MODELS]
                           + ["02_fit_phase_law", "03_select_models", "04_benchmark"])
    assert all(job["status"] == "ok" for job in record["jobs"])


def test_the_store_keeps_the_full_paths(own_models_run):
    from lensllm_nb.collection.store import ResultsStore

    with ResultsStore(own_models_run.out / "results.db", readonly=True) as store:
        curves = store.curves()
    assert sorted(curves["model"].unique()) == sorted(own_models_run.models.values())
    assert list(curves["dataset"].unique()) == [own_models_run.dataset]
    assert set(curves["n_train"]) == {0, 8, 16, 32, 64, 128, 2048}


def test_the_index_answers_with_short_names_and_labels_its_durations(own_models_run):
    index = (own_models_run.out / "index.html").read_text()
    picked = re.search(r"<h2>Fine-tune <code>([^<]+)</code></h2>", index)
    assert picked and picked.group(1) in MODELS
    assert "examples of <code>pairs.jsonl</code>" in index and "Budget:" not in index  # 248/2048 < 1/8
    assert not any(path in index for path in _full_paths(own_models_run))
    assert "<th>cells s</th><th>job s</th>" in index
    assert "cells ran" in (own_models_run.out / "reports" / "02_fit_phase_law.html").read_text()


def test_job_logs_carry_no_kernel_transport_warning(own_models_run):
    logs = sorted((own_models_run.out / "logs").glob("*.log"))
    assert len(logs) == 6
    assert not [log.name for log in logs if "without encryption" in log.read_text()]


def test_notebook_04_with_only_the_store_shows_only_what_applies(own_models_run):
    html = (own_models_run.out / "reports" / "04_benchmark.html").read_text()
    assert "Comparison with the published figures" not in html and "nothing to compare" not in html


def _figures_of(executed, monkeypatch, cwd):
    """Run the executed notebook's code again here; return the figures its cells drew.

    pyplot's figures, and the comparison widget's own (a Figure it keeps and shows as PNG).
    """
    import ast

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    monkeypatch.setenv("LENSLLM_NB_STATIC", "1")  # the widget cell draws its static figure, as in batch
    monkeypatch.chdir(cwd)
    nb = nbformat.read(executed, as_version=4)
    namespace, figures = {}, []
    plt.close("all")
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith("%")))
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, str(executed), "exec"), namespace)  # noqa: S102 - our own notebook
        value = eval(compile(ast.Expression(last.value), str(executed), "eval"), namespace) if last else None
        figures += [plt.figure(n) for n in plt.get_fignums() if plt.figure(n) not in figures]
        if isinstance(getattr(value, "_figure", None), Figure):
            figures.append(value._figure)
    return figures


def test_legends_use_short_names_and_one_colour_per_model_across_notebooks_02_and_03(own_models_run, monkeypatch):
    run = own_models_run
    colours, figures = {}, 0
    for stem in ("02_fit_phase_law", "03_select_models"):
        for figure in _figures_of(run.out / "notebooks" / f"{stem}.ipynb", monkeypatch, run.out.parent / "root"):
            shown = legend_colours(figure)
            assert not [label for label in shown if "my_models" in label or "my_data" in label]
            for model in MODELS.keys() & shown.keys():
                colours.setdefault(model, set()).add(shown[model])
            figures += MODELS.keys() <= shown.keys()
    assert figures >= 3  # prediction figure and law-fit overlay of 02, the widget's figure of 03
    assert {model: len(seen) for model, seen in colours.items()} == {model: 1 for model in MODELS}
