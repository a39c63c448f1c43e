"""The one curves-preparation path: sources, dataset and model choice, budget, target, seed means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.errors import ConfigError, CurveDataError
from lensllm_nb.workflow.notebook_curves import default_budget, load_curves, prepare_curves, stored_ntk

SIZES = [0, 100, 200, 400, 800, 1600, 3200, 6400]


def _curves(datasets=("alpha", "beta"), models=("m1", "m2", "m3"), seeds=(0, 1)):
    """Power-law curves with two seeds whose losses differ by a known amount."""
    rows = []
    for d, dataset in enumerate(datasets):
        for i, model in enumerate(models):
            for n in SIZES:
                for seed in seeds:
                    loss = 1.0 + (i + d + 1) * (n + 10) ** -0.3 + 0.01 * seed
                    rows.append({"model": model, "dataset": dataset, "n_train": n, "seed": seed,
                                 "test_loss": loss, "params": 1e6 * (i + 1)})
    return pd.DataFrame(rows)


def test_benchmark_name_gives_the_protocol_defaults(flan):
    curves = prepare_curves("flan")
    assert curves.dataset == "flan" and len(curves.models) == 30
    assert curves.target == 1638400 and curves.max_train == 1638400 // 64
    assert curves.sizes[0] == 200 and curves.sizes[-1] == 1638400
    assert curves.budgets[0] == curves.sizes[2] and curves.budgets[-1] < curves.target
    assert len(curves.truth) == 30
    assert "30 models" in curves.describe() and "25,600" in curves.describe()


def test_file_source_picks_dataset_and_models_and_averages_seeds(tmp_path):
    path = tmp_path / "curves.csv"
    _curves().to_csv(path, index=False)
    curves = prepare_curves(str(path), dataset="beta", models=["m3", "m1"])
    assert curves.dataset == "beta" and curves.models == ["m1", "m3"]
    assert set(curves.table["dataset"]) == {"beta"} and set(curves.table["model"]) == {"m1", "m3"}
    assert set(curves.loaded["dataset"]) == {"alpha", "beta"}
    means = curves.means.set_index(["model", "n_train"])
    raw = curves.table.groupby(["model", "n_train"])["test_loss"].mean()
    np.testing.assert_allclose(means["test_loss"].loc[raw.index], raw)
    assert (means["n_seeds"] == 2).all()
    assert curves.source == str(path)


def test_single_model_name_is_one_model_not_letters():
    curves = prepare_curves(_curves(), models="m2")
    assert curves.models == ["m2"]


def test_default_dataset_is_the_first_and_default_target_the_largest():
    curves = prepare_curves(_curves())
    assert curves.dataset == "alpha" and curves.target == 6400
    # target / 64 = 100 leaves fewer than 3 sizes: the budget is the third size
    assert curves.max_train == 400


def test_default_ratio_one_holds_out_only_the_target():
    curves = prepare_curves(_curves(), default_ratio=1)
    assert curves.max_train == 3200 and curves.target == 6400
    assert default_budget([100, 200, 400, 800], 800, ratio=1) == 400
    assert default_budget([100, 200, 400, 800, 1600], 1600, ratio=4) == 400


def test_explicit_budget_and_target():
    curves = prepare_curves(_curves(), max_train=800, target=3200)
    assert (curves.max_train, curves.target) == (800, 3200)
    assert curves.budgets == [400, 800, 1600]


def test_inputs_are_not_modified():
    table = _curves()
    before = table.copy()
    prepare_curves(table, dataset="beta", models=["m1", "m2"])
    pd.testing.assert_frame_equal(table, before)


@pytest.mark.parametrize("kwargs, match", [
    ({"dataset": "gamma"}, r"`dataset` = 'gamma' is not in the curves; choose one of \['alpha', 'beta'\]"),
    ({"models": ["m1", "nope"]}, r"`models` has \['nope'\]"),
    ({"models": []}, "`models` is empty"),
    ({"target": 100}, r"`target` = 100 is not a measured size"),
    ({"target": 5000}, r"`target` = 5000"),
    ({"max_train": 6400}, r"`max_train` = 6400 must be an integer from 400"),
    ({"max_train": 100}, r"`max_train` = 100"),
    ({"max_train": 800.5}, r"`max_train` = 800.5"),
    ({"max_train": True}, r"`max_train` = True"),
    ({"default_ratio": 0}, "`default_ratio` must be an integer"),
])
def test_bad_choices_raise_config_errors_naming_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        prepare_curves(_curves(), **kwargs)


def test_missing_sources_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="`curves` = None names no curves"):
        load_curves(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_curves(str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match="`name`"):
        load_curves("no_such_benchmark")
    store = tmp_path / "results.db"
    with pytest.raises(ConfigError, match="`store` = .* does not exist; run notebook 01"):
        load_curves("flan", store=str(store))
    assert not store.exists()  # reading never creates a store


def test_too_few_sizes_is_a_clear_error():
    short = _curves(datasets=("alpha",))
    short = short[short["n_train"] <= 400]
    with pytest.raises(ConfigError, match="has only 3 measured positive sizes"):
        prepare_curves(short)


def test_malformed_curves_keep_their_curve_error():
    bad = _curves().assign(test_loss=-1.0)
    with pytest.raises(CurveDataError):
        prepare_curves(bad)


def test_load_curves_filters_the_dataset(tmp_path):
    table = load_curves(_curves(), dataset="beta")
    assert set(table["dataset"]) == {"beta"}
    with pytest.raises(ConfigError, match="`dataset`"):
        load_curves(_curves(), dataset="gamma")


def test_store_source_reads_finished_runs(tmp_path):
    from lensllm_nb.collection.store import ResultsStore

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        for row in _curves(datasets=("zoo",), seeds=(0,)).to_dict("records"):
            store.upsert({**row, "params": int(row["params"]), "status": "ok", "config_hash": "c0"})
    curves = prepare_curves(store=str(path))
    assert curves.dataset == "zoo" and curves.models == ["m1", "m2", "m3"] and curves.source == str(path)
    assert stored_ntk(str(path), curves) is None and stored_ntk("", curves) is None
    probed = tmp_path / "probed.db"
    with ResultsStore(probed) as store:  # every run of m1 and m2 has NTK features
        for row in _curves(datasets=("zoo",), models=("m1", "m2"), seeds=(0,)).to_dict("records"):
            store.upsert({**row, "params": int(row["params"]), "status": "ok", "config_hash": "c0",
                          "ntk": {"trace": float(row["params"])}})
    assert stored_ntk(str(probed), prepare_curves(store=str(probed))) == {
        "m1": {"trace": 1e6}, "m2": {"trace": 2e6}}
