"""The comparison widget, driven programmatically (no kernel, no browser)."""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")

import numpy as np
import pandas as pd
import pytest

from lensllm_nb import benchmarks
from lensllm_nb.errors import ConfigError
from lensllm_nb.widgets import ComparisonWidget, comparison_widget

FLAN_MODELS = ["gpt2", "gpt2-medium", "facebook/opt-350m", "t5-base", "MBZUAI/LaMini-GPT-124M",
               "cerebras/Cerebras-GPT-111M"]


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


def test_build_fits_and_writes_figure_table_and_cost(flan):
    widget = comparison_widget(flan, target=1638400)
    assert widget.mode == "static"  # no kernel in the test process
    assert _kinds(widget) == [["image/png", "text/plain"], ["text/html", "text/plain"],
                              ["text/markdown", "text/plain"]]
    assert widget.budget.value == 25600 and widget.target.value == 1638400
    assert list(widget.ranking_.columns[:3]) == ["rank", "model", "predicted"]
    assert {"true", "true_rank", "d_star", "rmse_log", "status"} <= set(widget.ranking_.columns)
    assert sorted(widget.ranking_["model"]) == sorted(FLAN_MODELS)
    assert widget.chosen_ == widget.ranking_["model"].iloc[0]
    assert 0 < widget.cost_fraction_ < 0.1
    assert "cost" in widget.out.outputs[2]["data"]["text/markdown"].lower()


def test_budget_and_model_changes_refit_table_and_plot(flan):
    widget = ComparisonWidget(flan, max_train=3200)
    table, png, cost = _html(widget), _png(widget), widget.cost_fraction_
    predicted = widget.ranking_.set_index("model")["predicted"]

    widget.budget.value = 51200
    assert _html(widget) != table and _png(widget) != png
    assert widget.cost_fraction_ > cost
    assert not np.allclose(widget.ranking_.set_index("model")["predicted"].loc[predicted.index], predicted)

    table, png = _html(widget), _png(widget)
    widget.models.value = ("gpt2", "t5-base", "facebook/opt-350m")
    assert sorted(widget.ranking_["model"]) == ["facebook/opt-350m", "gpt2", "t5-base"]
    assert _html(widget) != table and _png(widget) != png
    assert "gpt2-medium" not in _html(widget)
    assert len(widget.out.outputs) == 3  # replaced, not appended


def test_law_and_target_changes_refit(flan):
    widget = ComparisonWidget(flan, max_train=6400, law="rectified")
    before = widget.ranking_.set_index("model")["predicted"].sort_index()
    widget.law.value = "vanilla"
    after = widget.ranking_.set_index("model")["predicted"].sort_index()
    assert not np.allclose(before, after)
    assert widget.fit_.summary["law"].unique().tolist() == ["vanilla"]
    widget.target.value = 102400
    assert "102,400" in widget.out.outputs[2]["data"]["text/markdown"]


def test_dataset_dropdown_swaps_models_and_sizes():
    table = pd.concat([_synthetic("alpha", ["a1", "a2", "a3"]), _synthetic("beta", ["b1", "b2"], seed=1)])
    widget = ComparisonWidget(table, dataset="alpha")
    assert widget.models.options == ("a1", "a2", "a3")
    widget.dataset.value = "beta"
    assert widget.models.value == ("b1", "b2")
    assert sorted(widget.ranking_["model"]) == ["b1", "b2"] and widget.error_ is None


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
