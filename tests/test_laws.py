import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensllm_nb.analysis.curve_fits import fit_curves
from lensllm_nb.analysis.fitting import LawSpec, fit_batch
from lensllm_nb.analysis.laws import LensLLMLaw, PowerLaw, RectifiedLaw, make_law
from lensllm_nb.errors import ConfigError, FitError, NotFittedError

SIZES = 200.0 * 2.0 ** np.arange(14)


def _noisy(law_fn, seed, noise=0.003):
    rng = np.random.default_rng(seed)
    clean = law_fn(SIZES)
    return clean * np.exp(rng.normal(0, noise, SIZES.size)), clean


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rectified_law_recovers_known_parameters(seed):
    B, Dl, beta, E = 30.0, 20.0, 0.3, 1.0
    L, _ = _noisy(lambda D: B / (Dl + D ** beta) + E, seed)
    law = RectifiedLaw().fit(SIZES, L)
    assert law.beta_ == pytest.approx(beta, rel=0.15)
    assert law.E_ == pytest.approx(E, rel=0.15)
    assert law.d_star_ == pytest.approx(Dl ** (1 / beta), rel=0.6)
    assert law.rmse_log_ < 0.006
    # The fitted curve, not only the parameters, must be right beyond the data.
    assert law.predict(1e7) == pytest.approx(B / (Dl + 1e7 ** beta) + E, rel=0.03)


@pytest.mark.parametrize("seed", [0, 1])
def test_power_law_recovers_known_parameters(seed):
    B, beta, E = 8.0, 0.25, 0.8
    L, _ = _noisy(lambda D: B * D ** -beta + E, seed)
    law = PowerLaw().fit(SIZES, L)
    assert law.beta_ == pytest.approx(beta, rel=0.1)
    assert law.E_ == pytest.approx(E, rel=0.1)
    assert law.d_star_ is None and set(law.params_) == {"B", "beta", "E"}
    assert np.all(law.phase(SIZES) == "power")


def test_lensllm_law_without_ntk_is_a_free_pre_learned_term():
    L, _ = _noisy(lambda D: 30.0 / (20.0 + D ** 0.3) + 1.0, 3)
    lens = LensLLMLaw().fit(SIZES, L)
    rect = RectifiedLaw().fit(SIZES, L)
    assert lens.params_["F"] == pytest.approx(rect.params_["D_l"], rel=1e-6)
    assert lens.rmse_log_ == pytest.approx(rect.rmse_log_, rel=1e-9)


class _FakeNTK:
    """F(t) = Σ c_i exp(-2 η λ_i t): the shape NTK features give."""

    def __init__(self, eig, proj):
        self.eig, self.proj = np.asarray(eig), np.asarray(proj)

    def F(self, t, eta=1.0):
        return float(np.sum(self.proj * np.exp(-2 * eta * self.eig * t)))


def test_lensllm_law_uses_ntk_features_with_t_fitted_or_fixed():
    L, _ = _noisy(lambda D: 30.0 / (20.0 + D ** 0.3) + 1.0, 4)
    ntk = _FakeNTK([1.0, 0.1, 0.01], [40.0, 20.0, 10.0])  # F(0) = 70 > 20: reachable
    fitted = LensLLMLaw(ntk=ntk).fit(SIZES, L)
    assert 0 <= fitted.params_["F"] <= 70.0 + 1e-9
    assert ntk.F(fitted.params_["t"]) == pytest.approx(fitted.params_["F"], rel=1e-4)
    fixed = LensLLMLaw(ntk=ntk, t=5.0).fit(SIZES, L)
    assert fixed.params_["F"] == pytest.approx(ntk.F(5.0), rel=1e-9)
    assert fixed.params_["t"] == 5.0


def test_lensllm_law_at_the_upper_bound_of_f_reports_t_zero():
    # The data want a pre-learned term above F(0): the fit stops at F(0) (to within
    # rounding), which means no training time, not an error from the root finder.
    L, _ = _noisy(lambda D: 30.0 / (20.0 + D ** 0.3) + 1.0, 4)
    for scale in (1.0, 1.0 + 1e-15, 1.0 - 1e-15):
        ntk = _FakeNTK([1.0, 0.1, 0.01], [4.0 * scale, 2.0, 1.0])  # F(0) ≈ 7 < 20: unreachable
        fitted = LensLLMLaw(ntk=ntk).fit(SIZES, L)
        assert fitted.params_["F"] == pytest.approx(ntk.F(0.0), rel=1e-6)
        assert fitted.params_["t"] == pytest.approx(0.0, abs=1e-9)


def test_phase_labels_and_intervals():
    L, _ = _noisy(lambda D: 30.0 / (200.0 + D ** 0.5) + 1.0, 5)
    law = RectifiedLaw().fit(SIZES, L)
    phases = law.phase(SIZES)
    assert phases[0] == "pre-power" and phases[-1] == "power"
    low, high = law.predict_interval([1e3, 1e7], level=0.9)
    mid = law.predict([1e3, 1e7])
    assert np.all(low < mid) and np.all(mid < high)
    wide_low, wide_high = law.predict_interval([1e7], level=0.99)
    assert wide_high[0] - wide_low[0] > high[1] - low[1]
    boot = RectifiedLaw(interval="bootstrap", n_boot=60).fit(SIZES, L)
    b_low, b_high = boot.predict_interval([1e7])
    assert b_low[0] < boot.predict(1e7) < b_high[0]


def test_fit_is_deterministic_and_does_not_mutate():
    L, _ = _noisy(lambda D: 30.0 / (20.0 + D ** 0.3) + 1.0, 6)
    D0, L0 = SIZES.copy(), L.copy()
    a = RectifiedLaw().fit(SIZES, L).params_
    b = RectifiedLaw().fit(SIZES, L).params_
    assert a == b
    assert np.array_equal(SIZES, D0) and np.array_equal(L, L0)


def test_settings_are_stored_unchanged_and_validated():
    law = make_law("rectified", huber_delta=0.05)
    assert law.get_params()["huber_delta"] == 0.05
    with pytest.raises(ConfigError, match="`law` must be one of"):
        make_law("cubic")
    with pytest.raises(ConfigError, match="`loss`"):
        RectifiedLaw(loss="l3").fit(SIZES, np.linspace(3, 2, SIZES.size))
    with pytest.raises(ConfigError, match="`D` must be positive"):
        RectifiedLaw().fit([0, 200, 400], [4, 3, 2])
    with pytest.raises(ConfigError, match="`L` must be positive"):
        RectifiedLaw().fit([100, 200, 400], [4, np.nan, 2])
    with pytest.raises(ConfigError, match="at least 3 distinct"):
        RectifiedLaw().fit([100, 100, 400], [4, 3, 2])
    with pytest.raises(NotFittedError, match="not fitted"):
        RectifiedLaw().predict(100)
    law = RectifiedLaw()
    assert law.set_params(n_starts=5) is law and law.n_starts == 5 and not law.is_fitted()
    with pytest.raises(ConfigError, match="unknown setting"):
        law.set_params(colour="red")


def test_delta_interval_uses_the_exact_jacobian():
    from lensllm_nb.analysis.fitting import law_jacobian, law_log_predict

    theta = np.array([np.log(50.0), 0.4, np.log(30.0), np.log(0.5)])
    _, jac = law_jacobian(theta, SIZES)
    eps = 1e-7
    for j in range(4):
        step = np.zeros(4)
        step[j] = eps
        up, down = law_log_predict(theta + step, SIZES[None])[0], law_log_predict(theta - step, SIZES[None])[0]
        numeric = (up - down) / (2 * eps)
        np.testing.assert_allclose(jac[:, j], numeric, rtol=1e-5, atol=1e-8)


def test_d_star_outside_the_plausible_range_is_missing_with_a_reason():
    D = SIZES
    L = 0.2 + 40.0 * D ** -0.45  # a pure power law: no pre-power phase
    law = RectifiedLaw().fit(D, L)
    assert law.d_star_ is None or 1.0 <= law.d_star_ <= 1e3 * D.max()
    if law.d_star_ is None:
        assert law.d_star_reason_


def test_fit_curves_matches_published_fit_error(flan, gigaword):
    """Median RMSE of log loss on all sizes ≤ the published rectified figures."""
    for table, published in ((flan, 0.0062), (gigaword, 0.0040)):
        for law in ("rectified", "lensllm"):
            summary = fit_curves(table, law).summary
            assert (summary["status"] == "ok").all()
            assert summary["rmse_log"].median() <= published


def test_fit_curves_reports_short_curves_as_failed(flan):
    result = fit_curves(flan, "rectified", max_train=400)
    assert (result.summary["status"] == "failed").all()
    assert result.laws == {}
    assert "at least 3" in result.summary["reason"].iloc[0]


def test_batch_matches_single_fits(flan):
    result = fit_curves(flan, "rectified", models=["gpt2", "t5-base"])
    for model, law in result.laws.items():
        rows = flan[(flan["model"] == model) & (flan["n_train"] > 0)]
        single = RectifiedLaw().fit(rows["n_train"], rows["test_loss"])
        assert single.params_ == pytest.approx(law.params_, rel=1e-9)


decreasing_curves = st.lists(
    st.floats(min_value=1e-4, max_value=0.5, allow_nan=False), min_size=3, max_size=12
).map(lambda steps: (200.0 * 2.0 ** np.arange(len(steps)), 5.0 * np.exp(-np.cumsum(steps))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(curve=decreasing_curves, law=st.sampled_from(["vanilla", "rectified", "lensllm"]))
def test_random_decreasing_curves_give_finite_parameters_or_fit_error(curve, law):
    D, L = curve
    try:
        fitted = make_law(law).fit(D, L)
    except FitError:
        return
    assert all(np.isfinite(v) for v in fitted.params_.values())
    assert np.isfinite(fitted.rmse_log_)
    assert np.all(np.isfinite(fitted.predict([1e3, 1e6, 1e9])))


@settings(max_examples=30, deadline=None)
@given(noise=st.lists(st.floats(-0.2, 0.2), min_size=4, max_size=10))
def test_random_noisy_curves_never_return_nan_silently(noise):
    D = 100.0 * 2.0 ** np.arange(len(noise))
    L = 3.0 * np.exp(np.asarray(noise))
    batch = fit_batch([D], [L], LawSpec())
    assert batch.success[0] == np.all(np.isfinite(batch.theta[0][[0, 1, 3]]))
    if batch.success[0]:
        assert np.isfinite(batch.rmse_log[0])
    else:
        assert batch.reason[0]


def test_fit_curves_passes_ntk_features_per_model():
    import pandas as pd

    from lensllm_nb.collection.ntk import NTKFeatures

    features = NTKFeatures.from_gram(np.diag([1.0, 0.1, 0.01]), np.array([6.0, 4.0, 3.0]))
    L = 30.0 / (20.0 + SIZES ** 0.3) + 1.0
    table = pd.DataFrame({"model": "m", "dataset": "d", "n_train": SIZES.astype(int), "seed": 0, "test_loss": L})
    fitted = fit_curves(table, "lensllm", ntk={"m": features.to_dict()})
    row = fitted.summary.iloc[0]
    assert row["F"] == pytest.approx(20.0, rel=1e-3)  # F(0) = 61 bounds it from above
    assert features.F(row["t"]) == pytest.approx(row["F"], rel=1e-4)
    fixed = fit_curves(table, "lensllm", ntk={"m": features}, t=0.5).summary.iloc[0]
    assert fixed["F"] == pytest.approx(features.F(0.5)) and fixed["t"] == 0.5


def test_interval_is_unbounded_with_a_warning_when_parameters_equal_points():
    D = np.array([100.0, 200.0, 400.0, 800.0])
    law = RectifiedLaw().fit(D, 30.0 / (20.0 + D ** 0.3) + 1.0)
    assert law.dof_ == 0
    with pytest.warns(UserWarning, match="unbounded"):
        low, high = law.predict_interval([1e5])
    assert low[0] == 0 and np.isinf(high[0])
    wider = RectifiedLaw().fit(SIZES[:6], 30.0 / (20.0 + SIZES[:6] ** 0.3) + 1.0)
    assert np.all(np.isfinite(wider.predict_interval([1e5])[1]))
