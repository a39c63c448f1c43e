"""Study W: the learning-curve envelope and the engine's t censored to it."""

import numpy as np
import pytest
from scipy import integrate, stats

from lensllm_nb.analysis.curve_envelope import log_envelope
from lensllm_nb.analysis.noise_floor import visible_noise
from lensllm_nb.analysis.predict import DOF, _LEVELS, _t2_ppf, _t2_sf, expected_regret, p_best
from lensllm_nb.errors import ConfigError
from test_predict import _curves  # the tests' one builder of hand-made visible curves


def test_the_envelope_is_the_1_over_n_floor_and_the_worst_loss_plus_the_curves_own_rise():
    falling = ([16, 32, 64, 128], [4.0, 3.0, 2.5, 2.2])
    rising = ([16, 32, 64, 128], [1.0, 0.8, 0.9, 0.95])
    visible = _curves(falling, rising, target=2048)  # 4 doublings beyond 128
    noise = 2 * visible_noise(visible)
    floor, ceiling = log_envelope(visible, ceiling="rise")
    np.testing.assert_allclose(floor, np.log([2.2 / 16, 0.95 / 16]) - noise)
    # W2: the falling curve never rises: its ceiling is its worst loss (+ noise + 1%); the rising
    # one carries its fastest rise per doubling (0.8 -> 0.9) over the 4 doublings to the target.
    np.testing.assert_allclose(ceiling, [np.log(4.0) + noise[0] + 0.01,
                                         np.log(1.0) + 4 * np.log(0.9 / 0.8) + noise[1] + 0.01])
    _, worst = log_envelope(visible, ceiling="worst")
    np.testing.assert_allclose(worst, np.log([4.0, 1.0]) + noise)
    assert np.all(np.isinf(log_envelope(visible, ceiling="none")[1]))
    with pytest.raises(ConfigError, match="`ceiling`"):
        log_envelope(visible, ceiling="max")


def test_the_engines_ceiling_carries_only_a_rise_that_run_noise_cannot_make():
    # W4: a steady rise (a straight line up in log-log, no noise) is carried whole; a flat curve
    # with one jump between sqrt(2)-spaced neighbours carries only what exceeds 2 sqrt(2) sigma
    # over a full doubling, where W2 carried the jump per half doubling.
    sizes = 16 * 2 ** (np.arange(5) / 2)
    steady = 0.5 * sizes ** 0.1
    jump = np.array([1.0, 1.0, 1.0, 1.0, 1.1])
    visible = _curves((sizes, steady), (sizes, jump), target=int(64 * 2 ** 4))  # 4 doublings beyond 64
    two_sigma = 2 * visible_noise(visible)
    assert two_sigma[0] == pytest.approx(0.0, abs=1e-12) and two_sigma[1] > 0
    floor, ceiling = log_envelope(visible)
    np.testing.assert_allclose(floor, log_envelope(visible, ceiling="rise")[0])
    net_jump = max(np.log(1.1) - np.sqrt(2) * two_sigma[1], 0.0)  # the best pair: 32 -> 64, one doubling
    np.testing.assert_allclose(ceiling, [np.log(steady[-1]) + 4 * 0.1 * np.log(2) + 0.01,
                                         np.log(1.1) + two_sigma[1] + 4 * net_jump + 0.01])
    _, w2 = log_envelope(visible, ceiling="rise")
    assert w2[1] == pytest.approx(np.log(1.1) + two_sigma[1] + 4 * np.log(1.1) / 0.5 + 0.01)
    assert ceiling[1] < w2[1]


def _censored_draws(center, scale, floor, ceiling, n=400_000):
    u = np.random.default_rng(0).uniform(0.0005, 0.9995, size=(n, center.size))
    return np.clip(center + scale * stats.t.ppf(u, DOF), floor, ceiling)


def test_censored_p_best_and_regret_agree_with_simulation_and_quadrature():
    center = np.array([0.0, 0.05, 0.3, -0.4])
    scale = np.array([0.1, 0.2, 0.05, 0.6])
    floor = np.array([-0.1, -np.inf, 0.1, -0.2])   # the 1st and 4th have mass piled at their floors
    ceiling = np.array([0.15, 0.1, np.inf, 0.5])
    pb = p_best(center, scale, floor, ceiling)
    draws = _censored_draws(center, scale, floor, ceiling)
    # Ties at a shared value cannot occur here (distinct floors), so argmin is the best.
    assert pb == pytest.approx(np.bincount(np.argmin(draws, axis=1), minlength=4) / len(draws), abs=0.01)

    def survival(y):
        sf = stats.t.sf((y - center) / scale, DOF)
        return np.where(y < floor, 1.0, np.where(y > ceiling, 0.0, sf))

    lo, hi = -150.0, 40.0  # the 2nd's left t tail and the 3rd's right one (the engine stops at 1e-6 quantiles)
    breaks = sorted(set(np.concatenate([floor, ceiling])[np.isfinite(np.concatenate([floor, ceiling]))]))
    exact = [integrate.quad(lambda y, i=i: survival(y)[i] - np.prod(survival(y)), lo, hi, points=breaks,
                            limit=800)[0] for i in range(4)]
    assert expected_regret(center, scale, floor, ceiling) == pytest.approx(exact, abs=3e-3)
    # Without an envelope nothing changes.
    assert p_best(center, scale, None, None) == pytest.approx(p_best(center, scale))


def test_censored_p_best_is_the_direct_product_on_the_grid_path_too():
    rng = np.random.default_rng(3)

    def direct(center, scale, floor, ceiling):
        y = np.clip(center[:, None] + scale[:, None] * _t2_ppf(_LEVELS)[None, :], floor[:, None], ceiling[:, None])
        mass = np.empty(center.size)
        for i in range(center.size):
            sf = _t2_sf((y[i][None, :] - center[:, None]) / scale[:, None])
            sf = np.where(y[i][None, :] <= floor[:, None], 1.0, np.where(y[i][None, :] > ceiling[:, None], 0.0, sf))
            sf[i] = 1.0
            mass[i] = np.prod(sf, axis=0).mean()
        return mass / mass.sum()

    for n in (40, 600):  # 600 close candidates, one of a tiny scale: the shared-grid path
        center = np.log(2.0) + rng.normal(0.0, 0.05, n)
        scale = np.concatenate([[1e-3], rng.uniform(0.02, 0.3, n - 1)])
        floor = center - rng.uniform(0.0, 0.4, n)
        ceiling = center + rng.uniform(0.05, 0.6, n)
        np.testing.assert_allclose(p_best(center, scale, floor, ceiling), direct(center, scale, floor, ceiling),
                                   rtol=1e-6, atol=1e-9)


def test_backtested_pick_with_the_envelope_reads_clipped_predictions():
    from lensllm_nb.analysis.selection import BacktestedPickSelector

    # A steep 3-point line runs away below its 1/n floor at 16 doublings; the other is flat.
    visible = _curves(([16, 32, 64], [4.0, 1.0, 0.25]), ([16, 32, 64], [0.5, 0.5, 0.5]), target=64 * 2 ** 16)
    plain = BacktestedPickSelector().fit_visible(visible)
    clipped = BacktestedPickSelector(envelope=True).fit_visible(visible)
    floor, ceiling = log_envelope(visible)
    assert np.log(plain.predictions_.iloc[0]) < floor[0]
    np.testing.assert_allclose(np.log(clipped.predictions_.to_numpy()),
                               np.clip(np.log(plain.predictions_.to_numpy()), floor, ceiling))
    assert clipped.ranking_[0] == clipped.predictions_.idxmin()
