"""The default's pick: observed leader or predicted leader, and the reason in words."""

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.analysis.pair_backtest import decide_pick, gap_persistence
from lensllm_nb.errors import ConfigError
from lensllm_nb.analysis.predict import predict_candidates
from lensllm_nb.analysis.selection import DEFAULT_METHOD, make_selector
from lensllm_nb.analysis.visible import VisibleCurves

SIZES = np.array([100.0, 200.0, 400.0, 800.0, 1600.0])


def _visible(a_losses, b_losses, target=12800):
    return VisibleCurves(models=["a", "b"], sizes=[SIZES, SIZES], losses=[np.array(a_losses), np.array(b_losses)],
                         zero_shot=np.full(2, np.nan), params=np.full(2, np.nan), target=target)


# a leads at every visible size; b closes in. The gap log(a) - log(b) at 1600 is log(0.5 / 0.55).
A = [0.9, 0.8, 0.7, 0.6, 0.5]
B = [1.5, 1.1, 0.8, 0.65, 0.55]


def test_same_name_needs_no_backtest():
    decision = decide_pick(_visible(A, B), np.log([0.4, 0.45]), refit=lambda c: pytest.fail("no backtest"))
    assert decision.chosen == "a" and decision.reason.startswith("a: observed leader at 1,600 and predicted lowest")


def test_extrapolation_that_forecast_the_gap_wins():
    observed = np.log(0.5 / 0.55)

    def refit(curves):
        # Forecasts the gap at 1600 exactly from every origin; persistence misses it.
        return np.array([observed, 0.0])

    decision = decide_pick(_visible(A, B), np.log([0.45, 0.30]), refit)
    assert decision.chosen == "b" and decision.origins == 2  # origins 400 and 800 (3 points, <= 1600 / 2)
    assert decision.extrapolation_error == pytest.approx(0.0, abs=1e-12) and decision.persistence_error > 0
    assert decision.reason.startswith("b: predicted lowest at 12,800, 33.3% below the observed leader a;")


def test_persistence_that_forecast_the_gap_keeps_the_leader():
    def refit(curves):
        return np.array([0.0, 1.0])  # a far-off forecast of the gap

    decision = decide_pick(_visible(A, B), np.log([0.45, 0.30]), refit)
    assert decision.chosen == "a" and decision.extrapolation_error > decision.persistence_error
    assert decision.reason.startswith("a: observed leader at 1,600; b is predicted 33.3% lower at 12,800, but")
    assert "persistence" in decision.reason


def test_margin_smaller_than_the_backtested_error_keeps_the_leader():
    observed = np.log(0.5 / 0.55)

    def refit(curves):
        # Error 0.01 (persistence: 0.027) at 2 and 1 doublings; the target is 3 doublings away, so the
        # predicted gap must exceed 0.01 * 3 / 1.5 = 0.02; log(0.45 / 0.445) = 0.011 does not.
        return np.array([observed + 0.01, 0.0])

    decision = decide_pick(_visible(A, B), np.log([0.45, 0.445]), refit)
    assert decision.chosen == "a" and "within the extrapolation's backtested error" in decision.reason


def test_the_t_test_form_of_the_margin_asks_more_of_few_origins():
    observed = np.log(0.5 / 0.55)

    def refit(curves):
        return np.array([observed + 0.01, 0.0])  # signed error 0.01 at both origins (2 and 1 doublings)

    # Grown to 3 doublings: 0.015 and 0.03, RMS 0.0237; t with 2 degrees of freedom at 0.9: 1.886.
    needed = 1.886 * np.sqrt((0.015 ** 2 + 0.03 ** 2) / 2)
    gap = np.log(0.45 / 0.40)  # 0.118 > 0.045: departs
    assert decide_pick(_visible(A, B), np.log([0.45, 0.40]), refit, departure_level=0.9).chosen == "b"
    assert needed == pytest.approx(0.0447, abs=1e-3) and gap > needed
    narrow = np.log([0.45, 0.45 * np.exp(-0.03)])  # gap 0.03: above today's 0.02, below the t-test's 0.045
    assert decide_pick(_visible(A, B), narrow, refit).chosen == "b"
    assert decide_pick(_visible(A, B), narrow, refit, departure_level=0.9).chosen == "a"


def test_the_noise_margin_asks_the_gap_to_clear_both_candidates_noise_floors():
    noisy_a = np.array(A) * np.exp(0.05 * np.array([1, -1, 1, -1, 1]))
    observed = np.log(noisy_a[-1] / 0.55)

    def refit(curves):
        return np.array([observed + 0.01, 0.0])  # today's threshold 0.02, as above

    gap = np.log([0.45, 0.45 * np.exp(-0.05)])  # 0.05 > 0.02, but < √(0.02² + (0.1 / √1.5)²) = 0.084 (+ b's floor)
    assert decide_pick(_visible(noisy_a, B), gap, refit).chosen == "b"
    assert decide_pick(_visible(noisy_a, B), gap, refit, noise_margin=True).chosen == "a"


def test_the_pooled_pair_backtest_weighs_the_leaders_gap_to_every_candidate():
    # c trails a by a constant 20%: persistence forecasts the a - c gap exactly, while the refit, exact
    # on a - b, misses a - c by 0.91 from both origins. Pooled pairs: b's two (extrapolation wins),
    # c's two (persistence wins).
    c_losses = np.array(A) * 1.2
    visible = VisibleCurves(models=["a", "b", "c"], sizes=[SIZES] * 3,
                            losses=[np.array(A), np.array(B), c_losses], zero_shot=np.full(3, np.nan),
                            params=np.full(3, np.nan), target=12800)
    observed = np.log(0.5 / 0.55)

    def refit(curves):
        return np.array([observed, 0.0, 1.0])

    pred = np.log([0.45, 0.30, 0.6])
    assert decide_pick(visible, pred, refit).chosen == "b"
    assert decide_pick(visible, pred, refit, pair_pool="mean").chosen == "a"  # 0.46 against 0.013
    assert decide_pick(visible, pred, refit, pair_pool="share").chosen == "a"  # wins 2 of 4: not more than half
    kept = decide_pick(visible, pred, refit, pair_pool="veto")  # loses 2 of 4: not more than half
    assert (kept.chosen, kept.pairs, kept.pairs_persistence_closer) == ("b", 4, 2)
    assert kept.reason.endswith("; persistence was not closer on most of the leader's gaps to every candidate "
                                "(2 of 4 backtests).")


def test_the_veto_keeps_the_leader_where_persistence_forecast_most_of_its_gaps():
    # Two more candidates trailing a by a constant share: persistence now wins 6 of 8 pair backtests.
    losses = [np.array(A), np.array(B)] + [np.array(A) * k for k in (1.2, 1.3, 1.4)]
    visible = VisibleCurves(models=["a", "b", "c", "d", "e"], sizes=[SIZES] * 5, losses=losses,
                            zero_shot=np.full(5, np.nan), params=np.full(5, np.nan), target=12800)
    observed = np.log(0.5 / 0.55)
    decision = decide_pick(visible, np.log([0.45, 0.30, 0.6, 0.65, 0.7]),
                           lambda curves: np.array([observed, 0.0, 1.0, 1.0, 1.0]), pair_pool="veto")
    assert (decision.chosen, decision.pairs, decision.pairs_persistence_closer) == ("a", 8, 6)
    assert decision.reason.startswith("a: observed leader at 1,600; b is predicted 33.3% lower at 12,800, and inside")
    assert decision.reason.endswith("but persistence was closer on most of the leader's gaps to every candidate "
                                    "(6 of 8 backtests): on these curves the extrapolation is not trusted.")


def test_gap_persistence_counts_the_pairs_where_the_gap_stayed_closer_than_lines():
    sizes = np.array([16.0, 32.0, 64.0])

    def curves(losses):
        return VisibleCurves(models=list("abc"), sizes=[sizes] * 3, losses=[np.array(l) for l in losses],
                             zero_shot=np.full(3, np.nan), params=np.full(3, np.nan), target=4096)

    # Power laws that cross: lines through 16 and 32 forecast 64 exactly, the gaps move.
    crossing = [2.0 * sizes ** -0.3, 2.6 * sizes ** -0.4, 3.0 * sizes ** -0.45]
    assert gap_persistence(curves(crossing)) == (0, 2)
    # Constant gaps to a, with b and c 5% high at 32: lines err by 0.1 in log, the gap that stays by 0.05.
    staying = [sizes ** -0.3, 1.2 * sizes ** -0.3 * [1, np.exp(0.05), 1], 1.4 * sizes ** -0.3 * [1, np.exp(0.05), 1]]
    assert gap_persistence(curves(staying)) == (2, 2)
    # A candidate with one point up to the origin has no line: its pair is left out.
    short = curves(staying)
    short = VisibleCurves(models=short.models, sizes=[sizes, sizes, sizes[1:]],
                          losses=[*short.losses[:2], short.losses[2][1:]], zero_shot=short.zero_shot,
                          params=short.params, target=4096)
    assert gap_persistence(short) == (1, 1)


def test_an_unknown_pair_pool_says_what_it_accepts():
    with pytest.raises(ConfigError, match=r"`pair_pool` must be one of \(None, 'mean', 'share', 'veto'\), got 'all'"):
        decide_pick(_visible(A, B), np.log([0.45, 0.30]), lambda c: np.zeros(2), pair_pool="all")


def test_engine_reports_the_pick_and_its_reason(zoo_curves):
    """On the zoo curves at budget 128 the default departs from the observed leader, and says why."""
    pred = predict_candidates(zoo_curves, max_train=128, target=2048)
    assert pred.method == DEFAULT_METHOD
    leader = zoo_curves[zoo_curves["n_train"] == 128].set_index("model")["test_loss"].idxmin()
    assert leader == "zoo/neox-small" and pred.chosen == "zoo/gpt2-tiny"
    assert pred.chosen_reason.startswith("zoo/gpt2-tiny: predicted lowest at 2,048")
    assert "observed leader zoo/neox-small" in pred.chosen_reason
    assert pred.to_json_dict()["chosen_reason"] == pred.chosen_reason
    # The shown ranking is curvature_drift's.
    visible_cd = make_selector("curvature_drift").fit(zoo_curves[zoo_curves["n_train"] <= 128], max_train=128,
                                                      target=2048)
    assert list(pred.frame["model"]) == visible_cd.ranking_


@pytest.fixture
def zoo_curves():
    from pathlib import Path

    return pd.read_csv(Path(__file__).parent / "data" / "zoo_v4_curves.csv")
