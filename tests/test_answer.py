"""The answer an index leads with: pick, prediction, cost and the check against full runs."""

from __future__ import annotations

import json
from html import escape

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.workflow.demo import write_summary
from lensllm_nb.workflow.recommendation import answer_selection
from lensllm_nb.workflow.report import write_index
from offline_html import network_loads

SIZES = (0, 8, 16, 32, 64, 128)
TARGET = 2048
SUMMARY_TYPES = {"chosen": str, "method": str, "predicted": float, "low": (float, type(None)),
                 "high": (float, type(None)), "p_best": (float, type(None)), "cost_fraction": float,
                 "candidates": int, "selection_max_train": int, "target": int, "true_rank": int,
                 "relacc": float}


def _curves(names=("a", "b", "c", "<script>d</script>")):
    """Rectified-law curves that cross: the zero-shot best is not the best at the target."""
    rows = []
    for i, name in enumerate(names):
        b, d_l, beta, e = 2.0 + i, 20.0 * (i + 1), 0.5 + 0.1 * i, 3.0 - 0.15 * i
        for n in (*SIZES, TARGET):
            loss = b / (d_l + n ** beta) + e
            rows.append({"model": name, "dataset": "zoo", "n_train": n, "seed": 0, "test_loss": loss,
                         "params": 1000 * (i + 1), "tokens": 60 * 3 * n, "flops": 6.0 * 1000 * (i + 1) * 180 * n})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def answer():
    return answer_selection(_curves(), max_train=128, target=TARGET, progressive_budget=0.05)


def test_summary_holds_the_issue_facts_with_their_types(answer, tmp_path):
    facts = json.loads(write_summary(answer, tmp_path / "summary.json").read_text())
    assert list(facts) == list(SUMMARY_TYPES)
    for key, kind in SUMMARY_TYPES.items():
        assert isinstance(facts[key], kind), (key, facts[key])
    assert facts["candidates"] == 4 and facts["target"] == TARGET and facts["selection_max_train"] == 128
    # Visible sizes 8..128 of every candidate against each fine-tuned on 2048.
    assert facts["cost_fraction"] == pytest.approx(248 / 2048)
    assert facts["low"] <= facts["predicted"] <= facts["high"]
    assert 0 <= facts["p_best"] <= 1 and 0 <= facts["relacc"] <= 1


def test_check_reads_the_full_runs_only_after_predicting(answer):
    table = _curves()
    truth = table[table["n_train"] == TARGET].set_index("model")["test_loss"]
    facts = answer.facts()
    assert facts["true_rank"] == int((truth < truth[facts["chosen"]]).sum()) + 1
    assert facts["best_true"] == truth.idxmin()
    # The prediction must not depend on the full runs: change them, same prediction.
    moved = table.assign(test_loss=np.where(table["n_train"] == TARGET, table["test_loss"] + 5, table["test_loss"]))
    again = answer_selection(moved, max_train=128, target=TARGET)
    pd.testing.assert_frame_equal(again.prediction.frame, answer.prediction.frame)
    assert again.summary()["true_rank"] is not None


def test_progressive_is_checked_too(answer):
    progressive = answer.facts()["progressive"]
    assert progressive["cost_fraction"] <= 0.05 + 1e-9
    assert progressive["true_rank"] >= 1 and 0 <= progressive["relacc"] <= 1


def test_without_full_runs_the_check_is_null(tmp_path):
    table = _curves()
    table = table[table["n_train"] <= 128]
    answer = answer_selection(table, max_train=64, target=TARGET)
    facts = json.loads(write_summary(answer, tmp_path / "s.json").read_text())
    assert facts["true_rank"] is None and facts["relacc"] is None
    assert "No full runs" in answer.to_html()


def test_index_leads_with_the_answer_escaped_and_offline(answer, tmp_path):
    entries = [{"name": "03_select_models", "status": "ok", "seconds": 1.0}]
    html = write_index(entries, tmp_path / "index.html", answer=answer).read_text()
    assert html.index("Fine-tune") < html.index("<h2>Notebooks</h2>")
    assert "<script>d</script>" not in html and "&lt;script&gt;d&lt;/script&gt;" in html
    assert "data:image/png;base64," in html and "RelAcc" in html
    assert network_loads(html) == []


def test_index_states_why_there_is_no_answer(tmp_path):
    html = write_index([], tmp_path / "index.html", answer="ConfigError: too few <sizes>").read_text()
    assert "No answer: ConfigError: too few &lt;sizes&gt;" in html


def test_the_check_counts_intervals_and_shows_the_free_baselines(answer):
    table = _curves()
    truth = table[table["n_train"] == TARGET].set_index("model")["test_loss"]
    facts = answer.facts()
    frame = answer.prediction.frame.set_index("model")
    expected = sum(frame.loc[m, "low"] <= truth[m] <= frame.loc[m, "high"] for m in frame.index)
    assert facts["inside"] == expected
    zero_shot = table[table["n_train"] == 0].set_index("model")["test_loss"].idxmin()
    largest = table.drop_duplicates("model").set_index("model")["params"].idxmax()
    assert facts["baselines"]["zeroshot"]["chosen"] == zero_shot
    assert facts["baselines"]["modelsize"]["chosen"] == largest
    rank = int((truth < truth[zero_shot]).sum()) + 1
    assert facts["baselines"]["zeroshot"]["true_rank"] == rank
    html = answer.to_html()
    assert f"inside their 90% intervals: <b>{expected} of 4</b>" in html
    assert f"the best zero-shot loss picks {escape(zero_shot)} (#{rank})" in html
    assert "&lt;script&gt;d&lt;/script&gt;" in html and "<script>d" not in html


def test_baselines_the_table_cannot_run_are_left_out():
    table = _curves().drop(columns="params")
    table = table[table["n_train"] > 0]
    answer = answer_selection(table, max_train=128, target=TARGET)
    assert answer.facts()["baselines"] == {}
    assert "Without fine-tuning" not in answer.to_html()


def test_answer_figure_has_a_narrow_layout_and_is_drawn_at_twice_its_size(answer):
    import base64
    import re
    import struct

    html = answer.to_html()
    # The answer's table scrolls inside the answer's box, so the box contains it on a phone.
    assert '<div class="table-scroll"><table class="answer-table">' in html
    (picture,) = re.findall(r"<picture>.*?</picture>", html, re.S)
    narrow = re.search(r'<source media="\(max-width: (\d+)px\)" srcset="data:image/png;base64,([^"]+)" '
                       r'width="(\d+)">', picture)
    wide = re.search(r'<img alt="[^"]+" width="(\d+)" src="data:image/png;base64,([^"]+)">', picture)
    assert narrow and wide and int(narrow.group(1)) >= 420

    def png_width(data):
        return struct.unpack(">I", base64.b64decode(data)[16:20])[0]

    # Shown at most at its CSS width, drawn at twice it: sharp at 1400 px and on dense screens.
    assert png_width(wide.group(2)) == 2 * int(wide.group(1)) and int(wide.group(1)) >= 900
    assert png_width(narrow.group(2)) == 2 * int(narrow.group(3)) and int(narrow.group(3)) <= 480


@pytest.mark.parametrize("narrow", [False, True])
def test_answer_figure_marks_at_the_target_do_not_cover_each_other(narrow):
    """Six candidates: each prediction's marks sit further from its neighbour's than a mark is wide."""
    import matplotlib.pyplot as plt

    answer = answer_selection(_curves(tuple("abcdef")), max_train=128, target=TARGET)
    fig = answer.figure(narrow=narrow)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        truths = [line for line in ax.lines if line.get_marker() == "o" and line.get_linestyle() == "None"]
        assert len(truths) == 6
        xs = sorted(ax.transData.transform((line.get_xdata()[0], 1.0))[0] for line in truths)
        width_px = truths[0].get_markersize() * fig.dpi / 72 + truths[0].get_markeredgewidth() * fig.dpi / 72
        assert min(np.diff(xs)) > width_px, (np.diff(xs), width_px)
        target = [line for line in ax.lines if line.get_linestyle() == ":"]
        assert target and target[0].get_xdata()[0] == TARGET
    finally:
        plt.close(fig)
