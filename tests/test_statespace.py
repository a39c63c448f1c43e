import numpy as np
import pytest

from lensllm_nb.analysis.visible import VisibleCurves
from lensllm_nb.analysis.selection import SlopeDriftSelector
from lensllm_nb.analysis.statespace import fit_slope_drift

X = np.log(200.0 * 2.0 ** np.arange(9))


def _steepening(rho, n=30, noise=0.003, seed=0):
    """Log-loss curves whose slope grows by the factor (1 + rho) per doubling."""
    rng = np.random.default_rng(seed)
    curves = []
    for slope in rng.uniform(0.02, 0.08, n):
        steps = slope * (1 + rho) ** np.arange(X.size - 1) * np.log(2)
        y = 1.0 - np.concatenate([[0.0], np.cumsum(steps)])
        curves.append(y + rng.normal(0, noise, X.size))
    return curves


def test_shared_slope_growth_is_recovered():
    assert fit_slope_drift([X] * 30, _steepening(0.1)).rho == pytest.approx(0.1, abs=0.03)
    assert fit_slope_drift([X] * 30, _steepening(0.0)).rho == pytest.approx(0.0, abs=0.03)


def test_one_batched_pass_equals_filtering_each_curve_alone():
    from lensllm_nb.analysis.statespace import _filter, _pad

    curves = _steepening(0.05, n=6)
    lengths = [9, 9, 7, 8, 9, 6]
    sizes = [X[:k] for k in lengths]
    losses = [y[:k] for y, k in zip(curves, lengths)]
    q, rho = np.array([[0.1], [3.0]]), np.array([[0.0], [0.08]])
    m, P, sse, logdet, count = _filter(*_pad(sizes, losses), q, rho)
    for i, (x, y) in enumerate(zip(sizes, losses)):
        mi, Pi, ssei, logdeti, counti = _filter(*_pad([x], [y]), q, rho)
        np.testing.assert_allclose(m[:, i], mi[:, 0], rtol=1e-9)
        np.testing.assert_allclose(P[:, i], Pi[:, 0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sse[:, i], ssei[:, 0], rtol=1e-9)
        assert count[0, i] == counti[0, 0] == x.size - 2
    fit = fit_slope_drift(sizes, losses)
    mean, var = fit.forecast(np.log(1638400.0))
    assert np.isfinite(mean).all() and (var > 0).all()


def test_selector_forecasts_steepening_beyond_a_straight_line():
    curves = _steepening(0.1, noise=0.001)
    visible = VisibleCurves(models=[f"m{i}" for i in range(30)], sizes=[np.exp(X)] * 30,
                            losses=[np.exp(y) for y in curves], zero_shot=np.full(30, np.nan),
                            params=np.full(30, np.nan), target=1638400)
    sel = SlopeDriftSelector().fit_visible(visible)
    straight = np.array([np.polyval(np.polyfit(X[-3:], y[-3:], 1), np.log(1638400.0)) for y in curves])
    assert (np.log(sel.predictions_.to_numpy()) < straight).mean() > 0.9
