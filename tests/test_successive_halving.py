"""Successive halving, hand-checked on a 4-candidate table."""

import pandas as pd
import pytest

from lensllm_nb.errors import ConfigError
from lensllm_nb.analysis.successive_halving import SuccessiveHalvingSelector

SIZES = (100, 200, 400, 800, 1600)
LOSSES = {"a": (1.00, 0.95, 0.90, 0.85, 0.80), "b": (1.10, 0.90, 0.80, 0.70, 0.60),
          "c": (1.20, 1.00, 0.85, 0.72, 0.50), "d": (1.30, 1.20, 1.10, 1.00, 0.90)}


def _table():
    return pd.DataFrame([{"model": m, "dataset": "toy", "n_train": n, "seed": 0, "test_loss": loss}
                         for m, losses in LOSSES.items() for n, loss in zip(SIZES, losses)])


def _below_target():
    table = _table()
    return table[table["n_train"] < 1600]


def test_eta_2_by_hand():
    # Every candidate costs the same per example; full data = 4 x 1600 = 6400 example-units.
    # Budget 0.3 -> 1920 units. Start 400 needs 4*400 + 2*800 = 3200 (too much); start 200 needs
    # 4*200 + 2*400 = 1600 (fits): rung 0 at 200 keeps b (0.90) and a (0.95); rung 1 at 400: b (0.80).
    sh = SuccessiveHalvingSelector(eta=2).fit(_below_target(), target=1600, budget=0.3)
    assert sh.start_size_ == 200 and sh.chosen_ == "b"
    assert sh.cost_fraction_ == pytest.approx(1600 / 6400)
    assert sh.ladder_[["size", "candidates", "kept"]].values.tolist() == [[200, 4, 2], [400, 2, 1]]
    assert sh.ranking_ == ["b", "a", "c", "d"]


def test_eta_4_by_hand():
    # eta 4 keeps one of four after one rung: start 400 costs 1600 units (0.25 <= 0.3), start 800 3200.
    sh = SuccessiveHalvingSelector(eta=4).fit(_below_target(), target=1600, budget=0.3)
    assert sh.start_size_ == 400 and sh.chosen_ == "b" and sh.cost_fraction_ == pytest.approx(0.25)
    assert sh.ladder_[["size", "candidates", "kept"]].values.tolist() == [[400, 4, 1]]


def test_ladder_ends_below_the_target():
    # Budget 0.5 admits start 800: nothing doubles it below the target, so the best at 800 is picked
    # (b 0.70 against c 0.72; c is the best at 1600, which no rung sees).
    sh = SuccessiveHalvingSelector(eta=2).fit(_below_target(), target=1600, budget=0.5)
    assert sh.start_size_ == 800 and sh.chosen_ == "b" and sh.cost_fraction_ == pytest.approx(0.5)


def test_budget_below_every_complete_ladder_climbs_while_it_pays():
    # Budget 0.1 -> 640 units: start 100 needs 4*100 + 2*200 = 800. Rung 0 (400) is paid, rung 1 is not:
    # the best at 100 is picked (a, 1.00).
    sh = SuccessiveHalvingSelector(eta=2).fit(_below_target(), target=1600, budget=0.1)
    assert sh.start_size_ == 100 and sh.chosen_ == "a" and sh.cost_fraction_ == pytest.approx(400 / 6400)
    assert sh.ladder_[["size", "candidates", "kept"]].values.tolist() == [[100, 4, 2]]


def test_budget_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match="no ladder fits `budget`"):
        SuccessiveHalvingSelector().fit(_below_target(), target=1600, budget=0.01)
    with pytest.raises(ConfigError, match="`eta`"):
        SuccessiveHalvingSelector(eta=1).fit(_below_target(), target=1600, budget=0.3)


def test_candidates_without_a_common_size_are_told_so():
    # Each candidate on its own grid (a: 100, 200, 400; b: 110, 220, 440 ...): no rung compares them.
    table = _below_target().copy()
    table["n_train"] = table["n_train"] + table["model"].map({"a": 0, "b": 10, "c": 20, "d": 30})
    with pytest.raises(ConfigError, match="share none below the target"):
        SuccessiveHalvingSelector().fit(table, target=1600, budget=0.3)
