"""Tables of notebooks 02–03 and calibration figures of notebook 04, from the engine."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.analysis.calibration import calibration_predictions, coverage, interval_score, reliability
from lensllm_nb.analysis.curve_fits import fit_curves
from lensllm_nb.analysis.predict import DEFAULT_METHOD, predict_candidates
from lensllm_nb.analysis.protocol import run_benchmark
from lensllm_nb.errors import ConfigError
from lensllm_nb.workflow.notebook_curves import prepare_curves
from lensllm_nb.workflow.tables import compare_methods, law_fit_table, protocol_ratio, ranking_table

TARGET = 1638400


def test_ranking_table_is_best_first_with_truth_and_ranks(flan):
    curves = prepare_curves(flan)
    res = predict_candidates(curves.table, max_train=curves.max_train, target=curves.target)
    table = ranking_table(res, curves.truth)
    assert list(table["rank"]) == list(range(1, 31))
    assert list(table["model"]) == list(res.frame["model"])
    assert table["predicted"].is_monotonic_increasing
    assert sorted(table["true_rank"]) == sorted(curves.truth.rank(method="min").astype(int))
    assert table.loc[table["model"] == curves.truth.idxmin(), "true_rank"].item() == 1
    partial = curves.truth.drop(curves.truth.index[0])
    assert "true" not in ranking_table(res, partial).columns  # never a half-filled truth column


def test_law_fit_table_shows_unidentified_d_star_as_missing_with_a_reason(flan):
    fit = fit_curves(flan, "rectified", max_train=25600)
    table = law_fit_table(fit, target=TARGET)
    assert len(table) == 30
    assert (table["d_star"].dropna() > 1.0).all()  # never 1e-99
    missing = table[table["d_star"].isna()]
    assert (missing["d_star_note"].str.len() > 0).all()
    assert (table.loc[table["d_star"].notna(), "d_star_note"] == "").all()
    ok = table["law_predicted"].notna()
    assert (table.loc[ok, "law_low"] <= table.loc[ok, "law_predicted"]).all()


def test_protocol_ratio_matches_the_visible_sizes():
    sizes = [200 * 2 ** k for k in range(14)]
    assert protocol_ratio(sizes, max_train=25600, target=1638400) == 64
    assert protocol_ratio([100, 300, 1000], max_train=300, target=1000) == 3
    with pytest.raises(ConfigError, match="`max_train` = 320"):
        protocol_ratio([100, 320, 333, 1000], max_train=320, target=1000)
    assert protocol_ratio(sizes, max_train=819200, target=1638400) == 2
    with pytest.raises(ConfigError, match="`max_train` = 300"):
        protocol_ratio([100, 200, 300, 400], max_train=300, target=400)


def test_compare_methods_takes_its_metrics_from_the_protocol(flan):
    curves = prepare_curves(flan, max_train=12800)
    methods = ["subtuning", "ats", DEFAULT_METHOD]
    table = compare_methods(curves, methods)
    run = run_benchmark(flan, methods=methods, ratios=[128])
    assert list(table["method"]) == methods
    for column in ("chosen", "pearson", "relacc", "cost_fraction"):
        assert table[column].tolist() == run.results[column].tolist()


def test_compare_methods_without_truth_gives_picks_only(flan):
    no_target = flan[flan["n_train"] < TARGET]
    curves = prepare_curves(no_target[~((no_target["n_train"] == 819200) & (no_target["model"] == "gpt2"))],
                            max_train=12800, target=819200)
    table = compare_methods(curves, ["ats", DEFAULT_METHOD])
    assert table["chosen"].notna().all() and table["pearson"].isna().all()


# -------------------------------------------------------------------- calibration


def test_interval_score_by_hand():
    e = np.exp(1.0)
    # inside: the width; below and above: width plus 2/alpha times the miss (log units)
    np.testing.assert_allclose(interval_score([1.0, 1.0, 1.0], [e, e, e], [2.0, 1 / e, e ** 2], alpha=0.1),
                               [1.0, 1.0 + 20.0, 1.0 + 20.0])
    with pytest.raises(ConfigError, match="`alpha`"):
        interval_score([1.0], [2.0], [1.5], alpha=0.0)


def test_coverage_and_reliability_on_a_hand_made_frame():
    frame = pd.DataFrame({
        "dataset": "d", "method": "m", "ratio": [8, 8, 16, 16], "max_train": 1, "model": ["a", "b", "a", "b"],
        "level": 0.9, "predicted": 1.0, "low": [0.9, 0.9, 0.9, 0.9], "high": [1.1, 1.1, 1.1, 1.1],
        "true": [1.0, 2.0, 1.05, 1.0], "p_best": [0.95, 0.05, 0.15, 0.85], "is_best": [True, False, False, True],
    })
    cov = coverage(frame).set_index("ratio")
    assert cov.loc[8, "coverage"] == 0.5 and cov.loc[16, "coverage"] == 1.0 and cov.loc["all", "coverage"] == 0.75
    assert cov.loc["all", "n"] == 4
    rel = reliability(frame, bins=2)
    assert rel["n"].tolist() == [2, 2] and rel["observed"].tolist() == [0.0, 1.0]
    rel = reliability(frame, bins=[0, 0.1, 0.5, 1])
    assert rel["n"].tolist() == [1, 1, 2] and rel["mean_p_best"].tolist() == pytest.approx([0.05, 0.15, 0.9])
    assert len(reliability(frame)) == 3  # default edges: 0.05, 0.15 and 0.85–0.95 fall in three bins
    for bad in (1, [0, 0.5], [0.1, 0.5, 1], [0, 0.6, 0.4, 1]):
        with pytest.raises(ConfigError, match="`bins`"):
            reliability(frame, bins=bad)


def test_calibration_predictions_cover_each_level_and_budget(flan):
    frame = calibration_predictions(flan, ratios=[64, 256], levels=[0.5, 0.9])
    assert len(frame) == 2 * 30 * 2
    assert set(frame["max_train"]) == {TARGET // 64, TARGET // 256}
    one = frame[(frame["ratio"] == 64) & (frame["level"] == 0.9)]
    assert one["p_best"].sum() == pytest.approx(1.0) and one["is_best"].sum() == 1
    narrow = frame[frame["level"] == 0.5].set_index(["ratio", "model"])
    wide = frame[frame["level"] == 0.9].set_index(["ratio", "model"])
    assert (wide["high"] - wide["low"] > narrow["high"] - narrow["low"]).all()
    cov = coverage(frame)
    pooled = cov[cov["ratio"] == "all"].set_index("level")["coverage"]
    assert pooled.loc[0.5] <= pooled.loc[0.9]
    with pytest.raises(ConfigError, match="`levels`"):
        calibration_predictions(flan, ratios=[64], levels=[1.5])


def test_tables_render_hostile_names_as_text():
    """Notebook tables reach reports as pandas HTML: model names must arrive escaped."""
    rows = []
    names = ["<img src=x onerror=alert(1)>", "[clickme](javascript:alert(4))", "plain"]
    for i, model in enumerate(names):
        for n in [0, 100, 200, 400, 800, 1600]:
            rows.append({"model": model, "dataset": "<script>d</script>", "n_train": n, "seed": 0,
                         "test_loss": 1.0 + (i + 1) * (n + 10) ** -0.3})
    curves = prepare_curves(pd.DataFrame(rows))
    res = predict_candidates(curves.table, max_train=curves.max_train, target=curves.target)
    html = ranking_table(res, curves.truth)._repr_html_()
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    summary = fit_curves(curves.table, "rectified").summary._repr_html_()
    assert "<script>" not in summary and "&lt;script&gt;" in summary


def test_published_comparison_only_where_the_paper_has_figures(flan):
    from lensllm_nb.analysis.published_curves import published
    from lensllm_nb.workflow.tables import published_comparison

    paper = published()
    results = run_benchmark(flan, methods=["ats", "subtuning"], ratios=[64, 512]).results
    table = published_comparison(results, paper)
    assert set(table["method"]) == {"ats", "subtuning"} and set(table["ratio"]) == {64, 512}
    assert list(table.index) == list(range(len(table)))  # a clean index
    np.testing.assert_allclose(table["difference"], table["ours"] - table["published"])
    own = results.assign(dataset="pairs.jsonl")  # a user's store: the paper has nothing to compare
    assert published_comparison(own, paper) is None and published_comparison(results, paper.iloc[:0]) is None


def test_tables_show_a_missing_value_as_a_dash_with_text_in_full():
    """Never a silent NaN: the display reads "—"; the DataFrame stays numeric."""
    from lensllm_nb.workflow.frames import MISSING, frame_html, frame_text

    reason = "D* below one example: no pre-power phase in the measured sizes, so every size is power"
    frame = pd.DataFrame({
        "model": ["<b>gpt2-tiny</b>", "t5-small"], "d_star": [np.nan, 92.4],
        "note": [reason, None], "steps": pd.array([3, None], dtype="Int64"),
        "created": [pd.Timestamp("2025-01-01"), pd.NaT], "flag": pd.array([True, None], dtype="boolean"),
    })
    html, text = frame_html(frame), frame_text(frame)
    for shown in (html, text):
        assert "NaN" not in shown and "None" not in shown and "NA" not in shown and "NaT" not in shown
    assert html.count(f"<td>{MISSING}</td>") == 5
    assert reason in html and "..." not in html  # full text, wrapped by the report's CSS
    assert "<b>gpt2-tiny" not in html and "&lt;b&gt;gpt2-tiny&lt;/b&gt;" in html
    assert set(re.findall(r"<th>([^<]+)</th>", html)) >= {"model", "d_star", "note", "steps"}
    assert frame["d_star"].dtype == float and frame["d_star"].isna().iloc[0]  # the data is untouched


def test_law_fit_table_renders_missing_d_star_as_a_dash_next_to_its_reason(flan):
    from lensllm_nb.workflow.frames import frame_html

    table = law_fit_table(fit_curves(flan, "rectified", max_train=25600), target=TARGET)
    assert table["d_star"].isna().any() and table["d_star"].dtype == float
    html = frame_html(table)
    assert "NaN" not in html and "<td>—</td>" in html
    note = table.loc[table["d_star"].isna(), "d_star_note"].iloc[0]
    assert f"<td>{note}</td>" in html  # the reason, untruncated


def test_show_frames_makes_every_dataframe_display_read_a_dash():
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter

    from lensllm_nb.workflow.frames import show_frames

    formatter = DisplayFormatter()
    assert show_frames(SimpleNamespace(display_formatter=formatter)) is None  # a cell ending with it shows nothing
    data, _ = formatter.format(pd.DataFrame({"std": [np.nan, 0.5], "count": [1, 2]}))
    assert "NaN" not in data["text/html"] and "<td>—</td>" in data["text/html"]
    assert "NaN" not in data["text/plain"] and "—" in data["text/plain"]
    show_frames()  # outside IPython: nothing to register, no error


def test_benchmark_runs_name_their_set_and_show_a_repeated_warning_once(monkeypatch, capsys):
    import warnings
    from types import SimpleNamespace

    from lensllm_nb.workflow import benchmark_runs

    def fake_run(table, *, methods, ratios):
        for _ in ratios:
            warnings.warn("rectified: the law interpolates the visible points", UserWarning)
        per = [SimpleNamespace(dataset=name, skipped=[]) for name in table]
        return SimpleNamespace(per_dataset=per, wall_seconds=1.25, summary=pd.DataFrame({"relacc": [np.nan]}),
                               skipped_ratios={table[0]: [{"ratio": 512, "reason": "too few sizes"}]})

    monkeypatch.setattr(benchmark_runs, "run_benchmarks", fake_run)
    sources = [(["flan"], [8, 16]), (["gigaword"], [8]), (["zoo"], [2, 4])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        runs = benchmark_runs.run_sets(sources, names=["flan", "gigaword", None])
    assert [str(w.message) for w in caught] == ["rectified: the law interpolates the visible points"]
    out = capsys.readouterr().out
    assert out.count("mean over datasets × ratios") == 3 and "skipped on zoo: 512 (too few sizes)" in out
    labels = [line for line in out.splitlines() if "mean over" in line]
    assert [label.split(":")[0] for label in labels] == ["flan", "gigaword", "zoo"]  # each names its set
    assert all("1 dataset," in label for label in labels)
    assert [benchmark_runs.run_label(run, name) for run, name in zip(runs, ["flan", "gigaword", None])] == labels
    many = SimpleNamespace(per_dataset=[SimpleNamespace(dataset=f"d{i}") for i in range(84)], wall_seconds=2.0)
    assert benchmark_runs.run_label(many, "lcdb_dev").startswith("lcdb_dev (d0, d1, d2, … (84 datasets)): 84 datasets")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        benchmark_runs.run_sets(sources[:1], show=False)
    assert len(caught) == 1 and capsys.readouterr().out == ""
