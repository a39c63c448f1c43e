"""The zoo selection question is real: checked on the stored curves of the demo's runs.

``tests/data/zoo_v<ZOO_VERSION>_curves.csv`` holds the curves ``lensllm-nb demo`` measured (seed 0,
every candidate, the selection sizes and the full run at ``zoo.FULL_SIZE``). The slow
test re-measures the smallest candidate to tie the file to the code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lensllm_nb.analysis.curve_fits import fit_curves
from lensllm_nb.analysis.metrics import cost_fraction
from lensllm_nb.collection import zoo
from lensllm_nb.workflow.recommendation import answer_selection

CURVES = Path(__file__).parent / "data" / f"zoo_v{zoo.ZOO_VERSION}_curves.csv"


@pytest.fixture(scope="module")
def curves():
    return pd.read_csv(CURVES)


def _ranking(series, ascending=True):
    return list(series.sort_values(ascending=ascending, kind="stable").index)


def test_stored_curves_are_this_zoo(curves):
    assert sorted(curves["model"].unique()) == sorted(zoo.names())
    for _, rows in curves.groupby("model"):
        assert tuple(sorted(rows["n_train"])) == zoo.DEMO_SIZES


def test_neither_zero_shot_nor_model_size_ranks_like_the_full_runs(curves):
    final = _ranking(curves[curves["n_train"] == zoo.FULL_SIZE].set_index("model")["test_loss"])
    zero_shot = _ranking(curves[curves["n_train"] == 0].set_index("model")["test_loss"])
    by_size = _ranking(curves.drop_duplicates("model").set_index("model")["params"], ascending=False)
    assert zero_shot != final
    assert by_size != final
    # Not only the order below the top: neither baseline names the best model.
    assert zero_shot[0] != final[0] and by_size[0] != final[0]


def test_selection_costs_at_most_an_eighth_of_fine_tuning_all(curves):
    assert zoo.FULL_SIZE >= 16 * zoo.SELECTION_MAX_TRAIN
    fraction = cost_fraction(curves, max_train=zoo.SELECTION_MAX_TRAIN, target=zoo.FULL_SIZE)
    assert fraction <= 1 / 8


@pytest.mark.xfail(strict=True, reason=(
    "zoo v4 falls short of issue 8's goal: the rectified law fitted on sizes <= 128 puts D* inside "
    "the selection sizes for llama-small (16) and llama-tiny (73) only; gpt2-wide 37,408 and "
    "neox-small 9,634 lie far beyond, gpt2-tiny's lies below one example and t5-small's curve rises. "
    "No fine-tuning or pretraining setting tried reached 4 of 6 on two seeds; see docs/BENCHMARKS.md, "
    "'Zoo v4'"))
def test_most_candidates_turn_to_the_power_phase_within_the_selection_sizes(curves):
    fit = fit_curves(curves, "rectified", max_train=zoo.SELECTION_MAX_TRAIN)
    smallest = min(n for n in zoo.SELECTION_SIZES if n > 0)
    inside = [m for m, law in fit.laws.items()
              if law.d_star_ is not None and smallest < law.d_star_ <= zoo.SELECTION_MAX_TRAIN]
    assert len(inside) > len(zoo.names()) / 2, {m: law.d_star_ for m, law in fit.laws.items()}


@pytest.mark.slow
def test_stored_curve_is_reproduced(curves, tmp_path):
    from lensllm_nb.collection.finetune import run_grid

    model = "zoo/llama-tiny"
    runs = run_grid(model, "zoo", zoo.SELECTION_SIZES, [0], tmp_path / "r.db", progress=False,
                    **zoo.DEMO_SETTINGS)
    stored = curves[curves["model"] == model].set_index("n_train")["test_loss"]
    measured = runs.set_index("n_train")["test_loss"]
    for n in zoo.SELECTION_SIZES:
        assert measured[n] == pytest.approx(stored[n], rel=1e-3)


@pytest.fixture(scope="module")
def demo_answer(curves):
    """The demo's answer on the stored curves: default method, 90% intervals, checked against the full runs."""
    return answer_selection(curves, max_train=zoo.SELECTION_MAX_TRAIN, target=zoo.FULL_SIZE)


def test_default_method_picks_a_near_best_candidate_on_the_stored_curves(demo_answer):
    # Issue 8's goal for the demo: the default method's pick has RelAcc >= 0.99
    # (the RelAcc of summary.json).
    facts = demo_answer.facts()
    assert facts["relacc"] >= 0.99, (facts["chosen"], demo_answer.truth.to_dict())


def test_most_full_runs_fall_inside_their_90_percent_intervals(demo_answer):
    # The demo's table shows each candidate's interval beside its full run: on the
    # zoo most of them must hold (a calibrated 90% interval misses about one in ten).
    assert demo_answer.prediction.level == 0.9
    assert demo_answer.inside() >= len(zoo.names()) - 1, demo_answer.prediction.frame.assign(
        full=demo_answer.truth.to_numpy())
