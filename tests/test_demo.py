"""`lensllm-nb demo --out DIR`: answer first, summary.json, offline reports, a fast second run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lensllm_nb.collection import zoo
from lensllm_nb.workflow.demo import run_demo
from lensllm_nb.workflow.recommendation import SUMMARY_KEYS
from offline_html import network_loads

# The two smallest candidates keep the end-to-end run to a few minutes.
CANDIDATES = ["zoo/gpt2-tiny", "zoo/llama-tiny"]


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    first = run_demo(out, candidates=CANDIDATES, log=None)
    second = run_demo(out, candidates=CANDIDATES, log=None)
    return out, first, second


@pytest.mark.slow
def test_summary_is_the_answer_with_its_check(demo_runs):
    out, first, _ = demo_runs
    assert first.ok, first.summary()
    facts = json.loads((out / "summary.json").read_text())
    assert facts["chosen"] in CANDIDATES and facts["candidates"] == len(CANDIDATES)
    assert facts["target"] == zoo.FULL_SIZE >= 16 * facts["selection_max_train"]
    assert facts["cost_fraction"] <= 0.125
    assert facts["true_rank"] in (1, 2) and 0 <= facts["relacc"] <= 1
    assert facts["low"] <= facts["predicted"] <= facts["high"] and 0 <= facts["p_best"] <= 1
    assert sorted(facts) == sorted(SUMMARY_KEYS)


@pytest.mark.slow
def test_index_leads_with_the_answer_and_no_report_loads_anything(demo_runs):
    out, _, _ = demo_runs
    index = (out / "index.html").read_text()
    assert index.index("Fine-tune") < index.index("<h2>Notebooks</h2>")
    pages = sorted(out.rglob("*.html"))
    assert len(pages) == 1 + len(CANDIDATES) + 3
    for page in pages:
        html = page.read_text()
        assert network_loads(html) == [], page.name
        assert '<script src="http' not in html and "widget-view+json" not in html, page.name


@pytest.mark.slow
def test_second_run_keeps_stored_candidates_and_their_tables(demo_runs):
    out, first, second = demo_runs
    assert second.ok, second.summary()
    kept = [r for r in second.results if r["stage"] == 1]
    assert len(kept) == len(CANDIDATES) and all(r.get("note") for r in kept)
    # Re-rendering notebook 01 keeps the runs table even when every run was stored.
    from lensllm_nb.workflow.report import render_report

    report = render_report(kept[0]["output"], out / "rerendered.html").read_text()
    assert "ground truth (full run)" in report and "selection" in report
    # Kept means not executed again: the notebooks still carry the first run's end time.
    import nbformat

    for result in kept:
        assert result["note"].endswith(f"{nbformat.read(result['output'], as_version=4).metadata['papermill']['end_time']} kept")
    assert json.loads((out / "summary.json").read_text())["chosen"] in CANDIDATES
    index = Path(second.index).read_text()
    assert "Progressive selection" in index and "all runs already in the store" in index
