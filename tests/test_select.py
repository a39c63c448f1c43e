import numpy as np
import pandas as pd
import pytest

from lensllm_nb.analysis.extrapolate import ats_transition, pooled_curvature, theil_sen
from lensllm_nb.analysis.metrics import cost_fraction, pearcorr, relacc, spearman, top1_regret
from lensllm_nb.analysis.progressive import ProgressiveSelector
from lensllm_nb.analysis.selection import DEFAULT_METHOD, SELECTORS, make_selector
from lensllm_nb.errors import ConfigError

TARGET = 1638400


def test_metrics_definitions():
    true = np.array([1.0, 2.0, 3.0])
    assert pearcorr([1, 2, 3], true) == pytest.approx(1.0)
    assert spearman([3, 2, 1], true) == pytest.approx(-1.0)
    assert relacc(1.0, true) == 1.0 and relacc(3.0, true) == 0.0 and relacc(2.0, true) == 0.5
    assert top1_regret(2.0, true) == 1.0
    assert pearcorr([1, 1, 1], true) == 0.0
    with pytest.raises(ConfigError, match="finite"):
        pearcorr([1, np.nan, 2], true)


def test_every_selector_ranks_all_models(flan):
    for name in SELECTORS:
        selector = make_selector(name).fit(flan[flan["n_train"] <= 25600], max_train=25600, target=TARGET)
        assert len(selector.ranking_) == 30 and selector.chosen_ == selector.ranking_[0]
        assert np.all(np.isfinite(selector.predictions_))
        assert 0 <= selector.cost_fraction_ < 1


def test_selectors_cannot_see_beyond_max_train(flan):
    visible = flan[flan["n_train"] <= 3200]
    a = make_selector(DEFAULT_METHOD).fit(flan, max_train=3200, target=TARGET).predictions_
    b = make_selector(DEFAULT_METHOD).fit(visible, max_train=3200, target=TARGET).predictions_
    pd.testing.assert_series_equal(a, b)


def test_cost_fraction_counts_six_params_tokens(flan):
    frac = cost_fraction(flan, max_train=3200, target=TARGET)
    # sizes 200..3200 sum to 6200 examples per model, params weight cancels per model.
    assert frac == pytest.approx(6200 / TARGET, rel=1e-9)
    assert cost_fraction(flan, max_train=3200, target=TARGET, sizes="largest") == pytest.approx(3200 / TARGET)
    assert cost_fraction(flan, max_train=3200, target=TARGET, sizes="none") == 0.0


def test_ats_transition_follows_the_published_rule():
    x = np.log(200.0 * 2.0 ** np.arange(8))
    # flat start, then a straight line: the walk must stop at the bend
    y = np.where(x < x[3], -0.01 * x, -0.01 * x[3] - 0.2 * (x - x[3]))
    y = y + np.array([0, 1e-3, -1e-3, 0, 2e-4, -2e-4, 1e-4, -1e-4])
    assert ats_transition(x, y) == 2
    assert ats_transition(x[:3], y[:3]) == -1


def test_theil_sen_ignores_one_outlier():
    x = np.arange(8.0)
    y = 2.0 - 0.1 * x
    y[3] += 5.0
    slope, intercept = theil_sen(x, y)
    assert slope == pytest.approx(-0.1)
    # Sen's intercept median(y) - slope * median(x) moves by at most one step of y.
    assert intercept == pytest.approx(2.0, abs=0.1)


def test_pooled_curvature_finds_shared_steepening_and_not_in_straight_lines():
    x = np.log(200.0 * 2.0 ** np.arange(8))
    rng = np.random.default_rng(0)
    straight = [1.0 - s * (x - x[0]) + rng.normal(0, 0.003, x.size) for s in np.linspace(0.03, 0.1, 20)]
    rate, se = pooled_curvature([x] * 20, straight)
    assert rate / max(se, 1e-9) < 1.96 or rate == 0
    # slopes growing in magnitude at rate 0.15 per unit log D
    u = x - x[-1]
    bent = [1.0 - s * np.expm1(0.15 * u) / 0.15 + rng.normal(0, 0.003, x.size) for s in np.linspace(0.05, 0.1, 20)]
    rate, se = pooled_curvature([x] * 20, bent)
    assert rate == pytest.approx(0.15, abs=0.05) and rate / se > 1.96


def test_selector_errors_are_for_users(flan):
    with pytest.raises(ConfigError, match="unknown method"):
        make_selector("oracle")
    with pytest.raises(ConfigError, match="`max_train`"):
        make_selector("ats").fit(flan, max_train=TARGET, target=TARGET)
    with pytest.raises(ConfigError, match="fewer than 3"):
        make_selector("lensllm").fit(flan, max_train=400, target=TARGET)


def test_progressive_selection_respects_budget(flan):
    pool = flan[flan["n_train"] < TARGET]
    sel = ProgressiveSelector(budget=0.01).fit(pool, target=TARGET)
    assert sel.cost_fraction_ <= 0.01
    assert len(sel.ranking_) == 30 and sel.chosen_ in sel.ranking_
    history = sel.history_
    assert history["active"].iloc[0] == 30
    assert history["active"].is_monotonic_decreasing
    assert history["size"].is_monotonic_increasing
    rounds = sel.p_best_history_.groupby("round")["p_best"]
    np.testing.assert_allclose(rounds.sum(), 1.0)
    assert (rounds.size().to_numpy() == history["active"].to_numpy()).all()
    with pytest.raises(ConfigError, match="`budget`"):
        ProgressiveSelector().fit(pool, target=TARGET)


def _sqrt2_pool(target=4096):
    sizes = [16, 23, 32, 45, 64, 91, 128, 181, 256, 362, 512, target]
    return pd.DataFrame([{"model": m, "dataset": "d", "n_train": n, "seed": 0, "test_loss": a * n ** -b + 0.1}
                         for m, a, b in (("a", 2.0, 0.3), ("b", 2.2, 0.35), ("c", 1.8, 0.25), ("d", 2.5, 0.4))
                         for n in sizes])


def test_progressive_buys_a_doubling_ladder_from_a_sqrt2_pool_and_every_size_when_asked():
    table = _sqrt2_pool()
    pool = table[table["n_train"] < 4096]
    doubling = ProgressiveSelector(budget=0.5).fit(pool, target=4096)
    every = ProgressiveSelector(budget=0.5, ladder="every").fit(pool, target=4096)
    # Rounds start after the 3 start points: 16, 32, 64 then 128, 256, 512 on the doubling ladder.
    assert set(doubling.history_["size"]) <= {64, 128, 256, 512}
    assert doubling.history_["size"].iloc[0] == 64 and every.history_["size"].iloc[0] == 32
    assert {91, 181, 362} & set(every.history_["size"])
    with pytest.raises(ConfigError, match="`ladder`"):
        ProgressiveSelector(budget=0.5, ladder="halves").fit(pool, target=4096)


def test_progressive_remainder_buys_the_next_size_for_the_contenders_it_can_pay():
    table = _sqrt2_pool()
    pool = table[table["n_train"] < 4096]
    # Every size costs its n (same model size): 4 x (16 + 32 + 64) = 448 of 4 x 4096 are the start points;
    # at budget 0.05 (819.2) the next size, 128, is paid for 2 candidates (704) but not for 3 (832).
    stop = ProgressiveSelector(budget=0.05).fit(pool, target=4096)
    contenders = ProgressiveSelector(budget=0.05, remainder="contenders").fit(pool, target=4096)
    assert stop.history_["size"].tolist() == [64] and stop.cost_fraction_ == 448 / 16384
    assert contenders.history_[["size", "active"]].values.tolist() == [[64, 4], [128, 2]]
    assert contenders.cost_fraction_ == (448 + 2 * 128) / 16384
    first = contenders.p_best_history_.query("round == 1").nlargest(2, "p_best")["model"]
    assert set(contenders.p_best_history_.query("round == 2")["model"]) == set(first)
    # One more candidate than min_keep cannot be paid at 256, so the rounds end (not a 1-candidate round).
    wider = ProgressiveSelector(budget=0.08, remainder="contenders").fit(pool, target=4096)
    assert wider.history_["size"].tolist() == [64, 128]
    with pytest.raises(ConfigError, match="`remainder`"):
        ProgressiveSelector(budget=0.5, remainder="all").fit(pool, target=4096)


def _persisting_pool(target=4096):
    """Four curves of one curved shape, 1.0 / 1.1 / 1.2 / 1.3 x (n^-0.3 + 0.1): their log gaps stay. Candidates
    b-d are 5% high at 32 only, so from 16 and 32 a straight line forecasts their gap to a at 64 off by 2 x 0.05,
    while "the gap stays" is off by 0.05."""
    sizes = [16, 32, 64, 128, 256, 512, 1024, 2048, target]
    return pd.DataFrame([{"model": m, "dataset": "d", "n_train": n, "seed": 0,
                          "test_loss": c * (n ** -0.3 + 0.1) * (np.exp(0.05) if (n == 32 and m != "a") else 1.0)}
                         for m, c in (("a", 1.0), ("b", 1.1), ("c", 1.2), ("d", 1.3)) for n in sizes])


def test_progressive_halves_after_the_start_points_where_the_leaders_gaps_persisted():
    table = _persisting_pool()
    pool = table[table["n_train"] < 4096]
    sel = ProgressiveSelector(budget=0.5).fit(pool, target=4096)
    # Start points 16, 32, 64 cost 4 x 112 = 448 of 4 x 4096; the largest halving start whose ladder fits the
    # remaining 0.5 x 16384 - 448 = 7744 is 512 (4 x 512 + 2 x 1024 = 4096; from 1024: 4 x 1024 + 2 x 2048 = 8192).
    assert sel.halved_ and sel.chosen_ == "a"
    assert sel.history_[["size", "active", "dropped"]].values.tolist() == [[512, 4, 2], [1024, 2, 1]]
    assert sel.cost_fraction_ == (448 + 4096) / 16384 and sel.history_["spent"].iloc[-1] == sel.cost_fraction_
    assert "successive halving from 512 examples" in sel.chosen_reason_ and "in 3 of 3 pairs" in sel.chosen_reason_
    assert sel.p_best_history_.empty and np.all(np.isfinite(sel.predictions_)) and len(sel.ranking_) == 4
    rounds = ProgressiveSelector(budget=0.5, persisting_gaps="rounds").fit(pool, target=4096)
    assert not rounds.halved_ and not rounds.p_best_history_.empty
    with pytest.raises(ConfigError, match=r"`persisting_gaps` must be one of \('halve', 'rounds'\), got 'never'"):
        ProgressiveSelector(budget=0.5, persisting_gaps="never").fit(pool, target=4096)


def test_theil_sen_equals_scipy_theilslopes():
    from scipy import stats

    rng = np.random.default_rng(1)
    x = np.log(200.0 * 2.0 ** np.arange(9))
    y = 1.0 - 0.07 * x + rng.normal(0, 0.01, x.size)
    slope, intercept, _, _ = stats.theilslopes(y, x, method="separate")
    assert theil_sen(x, y) == pytest.approx((slope, intercept), rel=1e-12)
