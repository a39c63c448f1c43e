import numpy as np
import pytest

from lensllm_nb.analysis.visible import VisibleCurves
from lensllm_nb.analysis.self_calibration import backtest_multiplier, backtest_ratios, blended_multiplier

SIZES = np.array([16, 32, 64, 128, 256])


def _visible(*curves, target=4096):
    return VisibleCurves(models=[f"m{i}" for i in range(len(curves))],
                         sizes=[np.asarray(s, dtype=float) for s, _ in curves],
                         losses=[np.asarray(l, dtype=float) for _, l in curves],
                         zero_shot=np.full(len(curves), np.nan), params=np.full(len(curves), np.nan), target=target)


def test_the_backtests_forecast_the_largest_visible_size_from_every_origin_up_to_half_of_it():
    a, b = 2.0 * SIZES ** -0.2, 3.0 * SIZES ** -0.3
    visible = _visible((SIZES, a), (SIZES, b))
    seen = []

    def center_and_spread(cut):
        # Off by 0.2 (log) from origin 64, by 0.1 from origin 128; spread 0.1.
        origin = cut.sizes[0][-1]
        seen.append((origin, cut.target, [len(s) for s in cut.sizes]))
        miss = {64: 0.2, 128: -0.1}[origin]
        return np.log([a[-1], b[-1]]) + miss, np.array([0.1, 0.1])

    ratios = backtest_ratios(visible, center_and_spread)
    # Origin 32 leaves 2 points, 256 is s_k itself: origins 64 and 128 only, each cut to its sizes, target s_k.
    assert seen == [(64, 256, [3, 3]), (128, 256, [4, 4])]
    np.testing.assert_allclose(np.concatenate(ratios), [2.0, 2.0, 1.0, 1.0])
    # Median of |error| / spread over candidates and origins (1.5), in units of the t's median |T|.
    assert backtest_multiplier(visible, center_and_spread, median_abs=0.5) == pytest.approx(3.0)
    assert visible.sizes[0].tolist() == SIZES.tolist()  # the input is not cut in place


def test_no_backtest_without_an_origin_or_when_the_largest_sizes_differ():
    def never(cut):
        raise AssertionError("no origin should be backtested")

    short = _visible((SIZES[:3], [3.0, 2.5, 2.2]), (SIZES[:3], [3.1, 2.6, 2.0]))
    uneven = _visible((SIZES, 2.0 * SIZES ** -0.2), (SIZES[:4], 3.0 * SIZES[:4] ** -0.3))
    for visible in (short, uneven):
        assert backtest_ratios(visible, never) == []
        assert backtest_multiplier(visible, never, median_abs=0.8) == 0.0


def test_the_blend_raises_the_prior_half_way_in_log_and_never_lowers_it():
    assert blended_multiplier(2.0, 8.0) == pytest.approx(4.0)
    assert blended_multiplier(2.0, 1.0) == 2.0
    assert blended_multiplier(2.0, 0.0) == 2.0  # no origin: the prior


def test_the_engine_widens_its_intervals_where_the_users_own_backtests_miss(flan):
    from lensllm_nb.analysis.visible import visible_curves
    from lensllm_nb.analysis.predict import (DEFAULT_METHOD, SCALE, _center_and_spread, _fit_methods, _t2_ppf,
                                             log_predictive, visible_noise)

    visible = visible_curves(flan, max_train=6400, target=1638400)
    center, scale = log_predictive(visible)
    prior_center, prior_scale = log_predictive(visible, self_calibrate=False)
    np.testing.assert_array_equal(center, prior_center)
    # The default shows curvature_drift's predictions, so its backtests refit curvature_drift.
    own = backtest_multiplier(visible, lambda cut: _center_and_spread(_fit_methods(cut, "curvature_drift"),
                                                                      "curvature_drift"), median_abs=_t2_ppf(0.75))
    assert own > SCALE  # at 6,400 FLAN's pre-power points make the backtests miss by more than the prior allows
    _, spread = _center_and_spread(_fit_methods(visible, DEFAULT_METHOD), DEFAULT_METHOD)
    expected = np.maximum(np.hypot(np.sqrt(SCALE * own) * spread, visible_noise(visible)), 1e-3)
    np.testing.assert_allclose(scale, expected)
    assert (scale >= prior_scale).all() and (scale > prior_scale).any()


def test_the_engine_reuses_the_picks_own_backtest_fits_with_the_same_result(flan):
    from lensllm_nb.analysis import predict
    from lensllm_nb.analysis.visible import cut_key, cut_visible, visible_curves

    visible = visible_curves(flan, max_train=6400, target=1638400)
    pick = predict._fit_methods(visible, "backtested_pick")["backtested_pick"]
    assert pick.backtest_fits_  # leader and predicted top differ here, so the pick backtested curvature_drift
    reused = predict._backtest_fitter(pick, "backtested_pick")
    fresh = predict._backtest_fitter(object(), "backtested_pick")  # nothing to reuse: every cut fitted anew
    s_k = visible.sizes[0][-1]
    for origin in (800, 1600, 3200):
        cut = cut_visible(visible, origin, target=s_k)
        assert cut_key(cut) in pick.backtest_fits_
        for a, b in zip(reused(cut), fresh(cut)):
            np.testing.assert_array_equal(a, b)
