"""Tables of notebooks 02–03 and calibration figures of notebook 04, from the engine."""

from __future__ import annotations

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
