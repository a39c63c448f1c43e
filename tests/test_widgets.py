"""The comparison widget, driven programmatically (no kernel, no browser)."""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lensllm_nb.analysis import published_curves as benchmarks  # noqa: E402
from lensllm_nb.analysis.predict import DEFAULT_METHOD, predict_candidates  # noqa: E402
from lensllm_nb.errors import ConfigError  # noqa: E402
from lensllm_nb.analysis.predict import DEFAULT_METHOD, predict_candidates  # noqa: E402
from lensllm_nb.utils.safe_output import escape_markdown  # noqa: E402
from lensllm_nb.workflow.notebook_curves import prepare_curves  # noqa: E402
from lensllm_nb.workflow.tables import compare_methods  # noqa: E402
from lensllm_nb.workflow.widgets import ComparisonWidget, comparison_widget  # noqa: E402

FLAN_MODELS = ["gpt2", "gpt2-medium", "facebook/opt-350m", "t5-base", "MBZUAI/LaMini-GPT-124M",
               "cerebras/Cerebras-GPT-111M"]
HOSTILE = ["<img src=x onerror=alert(1)>", "[clickme](javascript:alert(4))", "$x^2$ **bold**"]


@pytest.fixture(scope="module")
def flan():
    table = benchmarks.load("flan")
    return table[table["model"].isin(FLAN_MODELS)].reset_index(drop=True)


def _synthetic(dataset, models, seed=0):
    """Rectified-law curves with a little noise at sizes 0, 16, ..., 1024."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, model in enumerate(models):
        B, beta, dl, E = 3.0 + i, 0.5 + 0.05 * i, 20.0 * (i + 1), 1.0 + 0.1 * i
        for n in [0, 16, 32, 64, 128, 256, 512, 1024]:
            loss = B / (dl + n ** beta) * 10 + E if n else B + E
            rows.append({"model": model, "dataset": dataset, "n_train": n, "seed": 0,
                         "test_loss": loss * np.exp(rng.normal(0, 0.002)), "params": 1e6 * (i + 1)})
    return pd.DataFrame(rows)


def _kinds(widget) -> list:
    """The MIME types of each output the widget wrote."""
    return [sorted(output["data"]) for output in widget.out.outputs]


def _html(widget) -> str:
    return next(o["data"]["text/html"] for o in widget.out.outputs if "text/html" in o["data"])


def _png(widget) -> str:
    return next(o["data"]["image/png"] for o in widget.out.outputs if "image/png" in o["data"])


def _markdown(widget) -> str:
    return next(o["data"]["text/markdown"] for o in widget.out.outputs if "text/markdown" in o["data"])


def test_build_shows_the_engine_prediction_figure_table_and_summary(flan):
    widget = comparison_widget(flan, target=1638400)
    assert widget.mode == "static"  # no kernel in the test process
    assert _kinds(widget) == [["image/png", "text/plain"], ["text/html", "text/plain"],
                              ["text/markdown", "text/plain"]]
    assert widget.budget.value == 25600 and widget.target.value == 1638400 and widget.law.value == "none"
    assert list(widget.ranking_.columns) == ["rank", "model", "predicted", "low", "high", "p_best",
                                             "expected_regret", "true", "true_rank"]
    expected = predict_candidates(flan, max_train=25600, target=1638400)
    assert widget.predictions_.method == DEFAULT_METHOD
    assert list(widget.ranking_["model"]) == list(expected.frame["model"])
    np.testing.assert_allclose(widget.ranking_["predicted"], expected.frame["predicted"])
    assert widget.ranking_["p_best"].sum() == pytest.approx(1.0)
    assert (widget.ranking_["low"] < widget.ranking_["predicted"]).all()
    # The pick is the engine's; it may differ from the top row, and the summary says why.
    assert widget.chosen_ == expected.chosen
    assert f"Why: {escape_markdown(expected.chosen_reason)}" in widget._summary_line()
    assert widget.fit_ is None  # no law fit unless an overlay is asked for
    assert 0 < widget.cost_fraction_ < 0.1
    summary = _markdown(widget)
    assert "Cost" in summary and "P(best)" in summary and DEFAULT_METHOD.replace("_", r"\_") in summary


def test_budget_and_model_changes_update_table_and_plot(flan):
    widget = ComparisonWidget(flan, max_train=3200)
    table, png, cost = _html(widget), _png(widget), widget.cost_fraction_
    predicted = widget.ranking_.set_index("model")["predicted"].sort_index()

    widget.budget.value = 51200
    assert widget.predictions_.max_train == 51200
    assert _html(widget) != table and _png(widget) != png
    assert widget.cost_fraction_ > cost
    assert not np.allclose(widget.ranking_.set_index("model")["predicted"].sort_index(), predicted)

    table, png = _html(widget), _png(widget)
    widget.models.value = ("gpt2", "t5-base", "facebook/opt-350m")
    assert sorted(widget.ranking_["model"]) == ["facebook/opt-350m", "gpt2", "t5-base"]
    assert _html(widget) != table and _png(widget) != png
    assert "gpt2-medium" not in _html(widget)
    assert len(widget.out.outputs) == 3  # replaced, not appended


def test_overlay_draws_law_fits_without_changing_the_prediction(flan):
    widget = ComparisonWidget(flan, max_train=6400)
    ranking, png = widget.ranking_.copy(), _png(widget)
    widget.law.value = "rectified"
    assert widget.fit_.summary["law"].unique().tolist() == ["rectified"]
    pd.testing.assert_frame_equal(widget.ranking_, ranking)  # the overlay is not the prediction
    assert _png(widget) != png
    widget.law.value = "none"
    assert widget.fit_ is None and _png(widget) == png


def test_target_change_predicts_at_the_new_target(flan):
    widget = ComparisonWidget(flan, max_train=6400)
    widget.target.value = 102400
    assert widget.predictions_.target == 102400
    assert "102,400" in _markdown(widget)


def test_changes_reuse_one_figure_with_few_artists(flan):
    """Redrawing must not grow with the number of candidates (30 curves → one collection)."""
    widget = ComparisonWidget(benchmarks.load("flan"))
    figure = widget._figure
    counts = []
    for budget in (3200, 6400, 12800):
        widget.budget.value = budget
        curves, strip = figure.axes
        counts.append(len(curves.collections) + len(curves.lines) + len(strip.collections))
    assert widget._figure is figure and len(figure.axes) == 2
    assert len(set(counts)) == 1 and counts[0] <= 12


def test_dataset_dropdown_swaps_models_and_sizes():
    table = pd.concat([_synthetic("alpha", ["a1", "a2", "a3"]), _synthetic("beta", ["b1", "b2"], seed=1)])
    widget = ComparisonWidget(table, dataset="alpha")
    assert widget.models.options == ("a1", "a2", "a3")
    png = _png(widget)
    widget.dataset.value = "beta"
    assert widget.models.value == ("b1", "b2")
    assert sorted(widget.ranking_["model"]) == ["b1", "b2"] and widget.error_ is None
    assert widget.predictions_.dataset == "beta" and _png(widget) != png


def test_prepared_curves_offer_every_dataset_of_their_source():
    table = pd.concat([_synthetic("alpha", ["a1", "a2"]), _synthetic("beta", ["b1", "b2"], seed=1)])
    curves = prepare_curves(table, dataset="beta")
    widget = ComparisonWidget(curves, dataset=curves.dataset, max_train=curves.max_train)
    assert widget.dataset.options == ("alpha", "beta") and widget.dataset.value == "beta"


def test_dataset_without_enough_sizes_is_shown_not_raised():
    short = _synthetic("short", ["s1"])
    table = pd.concat([_synthetic("alpha", ["a1", "a2"]), short[short["n_train"] <= 64]])
    widget = ComparisonWidget(table, dataset="alpha")
    widget.dataset.value = "short"
    assert "'short'" in widget.error_ and widget.ranking_.empty
    assert _kinds(widget) == [["text/markdown", "text/plain"]]
    widget.dataset.value = "alpha"
    assert widget.error_ is None and sorted(widget.ranking_["model"]) == ["a1", "a2"]


def test_unusable_settings_are_shown_not_raised(flan):
    widget = ComparisonWidget(flan)
    widget.models.value = ()
    assert "`models`" in widget.error_
    assert _kinds(widget) == [["text/markdown", "text/plain"]]
    widget.models.value = ("gpt2",)
    assert widget.error_ is None and widget.chosen_ == "gpt2"
    assert widget.ranking_["p_best"].tolist() == [1.0]
    widget.budget.value = 819200
    widget.target.value = 1600
    assert "`budget`" in widget.error_


def test_bad_arguments_raise_config_errors(flan):
    with pytest.raises(ConfigError, match="`law`"):
        ComparisonWidget(flan, law="cubic")
    with pytest.raises(ConfigError, match="`max_train`"):
        ComparisonWidget(flan, max_train=300)
    with pytest.raises(ConfigError, match="`models`"):
        ComparisonWidget(flan, models=["nope"])
    with pytest.raises(ConfigError, match="`mode`"):
        ComparisonWidget(flan, mode="web")
    with pytest.raises(ConfigError, match="`dataset`"):
        ComparisonWidget(flan, dataset="wmt")


def test_display_shows_static_outputs_or_live_controls(flan):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    try:
        with capture_output() as static:
            ComparisonWidget(flan, mode="static")._ipython_display_()
        with capture_output() as live:
            ComparisonWidget(flan, mode="live")._ipython_display_()
    finally:
        InteractiveShell.clear_instance()  # other tests expect no shell
    assert [sorted(o.data) for o in static.outputs] == [
        ["image/png", "text/plain"], ["text/html", "text/plain"], ["text/markdown", "text/plain"]]
    assert "application/vnd.jupyter.widget-view+json" in live.outputs[0].data


@pytest.mark.parametrize("name", ["flan", "gigaword"])
def test_widget_and_benchmark_table_agree_on_the_default_pick(name):
    """Notebook 03: the widget and the method table above it pick the same model at the same budget."""
    curves = prepare_curves(name)
    table = compare_methods(curves, [DEFAULT_METHOD, "ats"])
    widget = ComparisonWidget(curves, dataset=curves.dataset, max_train=curves.max_train, target=curves.target)
    row = table[table["method"] == DEFAULT_METHOD].iloc[0]
    assert widget.chosen_ == row["chosen"]
    assert widget.cost_fraction_ == pytest.approx(row["cost_fraction"])


def test_hostile_model_and_dataset_names_render_as_text():
    models = HOSTILE
    table = _synthetic("$x^2$ <b>set</b>](javascript:x)", models)
    widget = ComparisonWidget(table)
    html, summary = _html(widget), _markdown(widget)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in summary and "](javascript:" not in summary and "<b>" not in summary
    assert "&lt;img" in summary or "&lt;b&gt;" in summary
    title = widget._figure.get_suptitle()
    assert title.startswith(r"\$x^2\$ <b>set</b>")  # mathtext escaped: drawn literally
    labels = [t.get_text() for t in widget._figure.axes[1].get_legend().get_texts()]
    assert any(r"\$x^2\$" in label for label in labels)


def test_hostile_error_message_renders_as_text():
    table = pd.concat([_synthetic("alpha", ["a1", "a2"]),
                       _synthetic("<img src=x onerror=alert(1)>", ["s1"]).query("n_train <= 64")])
    widget = ComparisonWidget(table, dataset="alpha")
    widget.dataset.value = "<img src=x onerror=alert(1)>"
    text = _markdown(widget)
    assert widget.error_ and "<img" not in text and "&lt;img" in text


def test_deselecting_a_model_keeps_the_others_colours(flan):
    from own_models import legend_colours

    widget = ComparisonWidget(flan, max_train=3200)
    before = legend_colours(widget._figure)
    widget.models.value = ("gpt2", "t5-base", "facebook/opt-350m")
    after = legend_colours(widget._figure)
    assert {m: after[m] for m in widget.models.value} == {m: before[m] for m in widget.models.value}
