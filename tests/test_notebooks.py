"""The four notebooks: committed clean, and executed with papermill on tiny parameters.

The executed run goes through the batch runner (papermill, the registered
``lensllm-nb`` kernel, CPU, offline), then each notebook's figures and tables are
checked, and so is its rendered report.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from lensllm_nb.collection.store import ResultsStore
from lensllm_nb.workflow.batch import run_batch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
FLAN_MODELS = ["gpt2", "gpt2-medium", "facebook/opt-350m", "t5-base", "MBZUAI/LaMini-GPT-124M",
               "cerebras/Cerebras-GPT-111M"]
ZOO_MODEL = "zoo/gpt2-tiny"
ZOO_SIZES = [0, 16, 32, 64, 128]


def test_there_are_four_notebooks():
    assert [path.name for path in NOTEBOOKS] == [
        "01_finetune_subsets.ipynb", "02_fit_phase_law.ipynb", "03_select_models.ipynb", "04_benchmark.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_clean_with_one_plain_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "lensllm-nb"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = []
    for statement in ast.parse(tagged[0].source).body:
        assert isinstance(statement, ast.Assign), ast.unparse(statement)
        ast.literal_eval(statement.value)  # plain values only
        names += [target.id for target in statement.targets]
    # papermill's own reader (`papermill --help-notebook`, the batch runner's checks)
    # skips, with a warning in every log, a line it cannot parse, e.g. one whose
    # comment holds a second "=".
    assert list(papermill.inspect_notebook(str(path))) == names


@pytest.fixture(scope="module")
def executed(tmp_path_factory, batch_env):
    """Run all four notebooks once, on tiny parameters, through the batch runner."""
    out = tmp_path_factory.mktemp("notebooks")
    grid = {
        "name": "notebook-tests",
        "root": str(ROOT),
        "timeout": 900,
        "env": batch_env,
        "parameters": {"store": "{out}/results.db"},
        "jobs": [
            {"notebook": "notebooks/01_finetune_subsets.ipynb", "stage": 1,
             "parameters": {"model": ZOO_MODEL, "dataset": "zoo", "sizes": ZOO_SIZES, "epochs": 1,
                            "ntk_probe": 4}},
            {"notebook": "notebooks/02_fit_phase_law.ipynb", "stage": 2,
             "parameters": {"dataset": "zoo", "law": "lensllm"}},
            {"notebook": "notebooks/02_fit_phase_law.ipynb", "stage": 2, "name": "02_on_flan",
             "parameters": {"store": "", "curves": "flan", "models": FLAN_MODELS, "law": "rectified"}},
            {"notebook": "notebooks/03_select_models.ipynb", "stage": 2,
             "parameters": {"store": "", "curves": "flan", "models": FLAN_MODELS, "max_train": 12800,
                            "methods": ["subtuning", "ats", "curvature_drift"], "progressive_budget": 0.05}},
            {"notebook": "notebooks/04_benchmark.ipynb", "stage": 2,
             "parameters": {"store": "", "sets": ["flan"], "ratios": [16, 256],
                            "methods": ["zeroshot", "subtuning", "ats", "curvature_drift"]}},
        ],
    }
    result = run_batch(grid, out=out, workers=2, log=None)
    return result, {item["name"]: item for item in result.results}


def _outputs(item) -> list:
    """Every display/result output of an executed notebook, as dicts of MIME data."""
    nb = nbformat.read(item["output"], as_version=4)
    return [output["data"] for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
            if output["output_type"] in ("display_data", "execute_result")]


def _tables(item) -> list:
    return [data["text/html"] for data in _outputs(item) if "<table" in data.get("text/html", "")]


def _headers(html) -> set:
    return set(re.findall(r"<th[^>]*>([^<]+)</th>", html))


def _n_images(item) -> int:
    return sum("image/png" in data for data in _outputs(item))


def _table_with(item, columns) -> str:
    """The first HTML table that has all `columns` as headers."""
    for html in _tables(item):
        if set(columns) <= _headers(html):
            return html
    raise AssertionError(f"no table with columns {columns}; tables have {[_headers(t) for t in _tables(item)]}")


@pytest.mark.slow
def test_every_notebook_runs(executed):
    result, _ = executed
    failed = {item["name"]: item["error"] for item in result.results if item["status"] != "ok"}
    assert not failed
    assert len(result.results) == 5


@pytest.mark.slow
def test_01_fine_tunes_into_the_store_with_progress(executed):
    _, jobs = executed
    item = jobs["01_finetune_subsets"]
    _table_with(item, ["n_train", "test_loss", "train_loss", "flops", "status"])
    assert _n_images(item) >= 1
    assert any("application/vnd.jupyter.widget-view+json" in data for data in _outputs(item))  # tqdm bars
    curves = ResultsStore(Path(item["output"]).parents[1] / "results.db").curves()
    assert sorted(curves["n_train"]) == ZOO_SIZES and set(curves["model"]) == {ZOO_MODEL}


@pytest.mark.slow
def test_02_predicts_with_the_engine_and_fits_laws_as_an_overlay(executed):
    _, jobs = executed
    for name in ("02_fit_phase_law", "02_on_flan"):
        item = jobs[name]
        _table_with(item, ["rank", "model", "predicted", "low", "high", "p_best", "expected_regret"])
        _table_with(item, ["model", "law", "rmse_log", "d_star", "status"])
        laws = _table_with(item, ["model", "law", "rmse_log", "d_star", "d_star_note", "law_predicted"])
        assert "e-99" not in laws and "e-88" not in laws
        assert _n_images(item) >= 3
    # notebook 02 holds the target out by default: the prediction is checked against the truth
    _table_with(jobs["02_on_flan"], ["rank", "model", "predicted", "p_best", "true", "true_rank"])
    phases = _tables(jobs["02_on_flan"])
    assert any("pre-power" in html or ">power<" in html for html in phases)


@pytest.mark.slow
def test_03_predicts_compares_methods_selects_progressively_and_shows_the_comparison(executed):
    _, jobs = executed
    item = jobs["03_select_models"]
    ranking = _table_with(item, ["rank", "model", "predicted", "low", "high", "p_best", "true", "true_rank"])
    selection = _table_with(item, ["method", "chosen", "pearson", "relacc", "cost_fraction"])
    assert all(method in selection for method in ("subtuning", "ats", "curvature_drift"))
    _table_with(item, ["round", "size", "active", "spent", "leader", "dropped"])
    assert all(model in ranking for model in FLAN_MODELS)
    summary = [data["text/markdown"] for data in _outputs(item) if "text/markdown" in data]
    assert summary and "cost" in summary[-1].lower() and "P(best)" in summary[-1]
    assert _n_images(item) >= 2  # the ranking bars and the widget's figure


@pytest.mark.slow
def test_04_benchmarks_with_heatmaps_pareto_and_published_figures(executed):
    _, jobs = executed
    item = jobs["04_benchmark"]
    _table_with(item, ["pearson", "relacc", "spearman", "cost_fraction"])
    comparison = _table_with(item, ["dataset", "method", "metric", "ratio", "published", "ours", "difference"])
    assert "ats" in comparison
    assert _n_images(item) >= 6  # two heatmaps, the Pareto plot, predicted vs true, coverage, reliability
    _table_with(item, ["dataset", "level", "ratio", "coverage", "n", "mean_interval_score"])


@pytest.mark.slow
def test_reports_are_single_files_with_embedded_images_and_no_code(executed):
    result, jobs = executed
    for item in result.results:
        html = Path(item["report"]).read_text()
        assert "data:image/png;base64," in html
        assert not re.search(r'<img[^>]+src="(?!data:)', html)
        for code in ("import pandas as pd", "fit_curves(data.table", "run_grid(model", "comparison_widget(data"):
            assert code not in html
        assert f"<h1>{item['name']}</h1>" in html
    index = (result.out / "index.html").read_text()
    assert all(f'href="reports/{name}.html"' in index for name in jobs)
