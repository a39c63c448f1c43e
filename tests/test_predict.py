import json

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.errors import ConfigError
from lensllm_nb.predict import DEFAULT_METHOD, expected_regret, p_best, predict_candidates

TARGET = 1638400


def _strict_loads(text):
    def reject(token):
        raise ValueError(f"non-strict JSON token {token}")
    return json.loads(text, parse_constant=reject)


def test_predict_candidates_follows_the_api(flan):
    res = predict_candidates(flan, max_train=25600, target=TARGET, level=0.9)
    frame = res.frame
    assert list(frame.columns) == ["model", "predicted", "low", "high", "p_best", "expected_regret"]
    assert len(frame) == 30 and res.chosen == frame["model"].iloc[0]
    assert np.isfinite(frame.drop(columns="model").to_numpy(dtype=float)).all()
    assert frame["p_best"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (frame["low"] < frame["predicted"]).all() and (frame["predicted"] < frame["high"]).all()
    assert (frame["expected_regret"] >= 0).all()
    assert res.method == DEFAULT_METHOD and res.max_train == 25600 and res.target == TARGET
    wide, narrow = res.interval(0.99), res.interval(0.5)
    assert list(wide["model"]) == list(frame["model"])
    assert (wide["low"] < narrow["low"]).all() and (wide["high"] > narrow["high"]).all()
    doc = _strict_loads(json.dumps(res.to_json_dict(), allow_nan=False))
    assert [m["model"] for m in doc["models"]] == list(frame["model"]) and doc["chosen"] == res.chosen


def test_predict_candidates_ignores_sizes_above_max_train(flan):
    a = predict_candidates(flan, max_train=6400, target=TARGET).frame
    b = predict_candidates(flan[flan["n_train"].isin([0, 200, 400, 800, 1600, 3200, 6400, TARGET])],
                           max_train=6400, target=TARGET).frame
    pd.testing.assert_frame_equal(a, b)


def test_predict_candidates_rejects_bad_input(flan):
    with pytest.raises(ConfigError, match="`level`"):
        predict_candidates(flan, max_train=25600, level=1.5)
    with pytest.raises(ConfigError, match="`method`"):
        predict_candidates(flan, max_train=25600, method="zeroshot")
    with pytest.raises(ConfigError, match="`models`"):
        predict_candidates(flan, max_train=25600, models=["nope"])


def test_p_best_and_regret_agree_with_simulation():
    center = np.array([0.0, 0.05, 0.3])
    scale = np.array([0.1, 0.2, 0.05])
    pb = p_best(center, scale)
    assert pb.sum() == pytest.approx(1.0)
    draws = np.random.default_rng(0).normal(center, scale, size=(200_000, 3))
    best = np.argmin(draws, axis=1)
    assert pb == pytest.approx(np.bincount(best, minlength=3) / len(best), abs=0.01)
    loss = np.exp(draws)
    regret = (loss - loss.min(axis=1, keepdims=True)).mean(axis=0)
    assert expected_regret(center, scale) == pytest.approx(regret, abs=0.005)
