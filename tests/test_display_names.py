"""Your own models and data (issue 21): display names (a path's last part, unique, overridable; the store keeps the full path) and the costly-budget line."""

from __future__ import annotations

import pandas as pd
import pytest

from lensllm_nb.collection.display_names import display_names, is_path_name, short_name, with_display_names
from lensllm_nb.errors import ConfigError
from lensllm_nb.workflow.notebook_curves import load_curves, prepare_curves, stored_ntk


def test_paths_shorten_and_other_names_stay():
    assert [is_path_name(n) for n in ("/m/gpt2", "./gpt2", "~/x", "data/t.jsonl", "zoo/gpt2-tiny",
                                      "facebook/opt-350m", "flan")] == [True, True, True, True, False, False, False]
    assert short_name("/data/models/gpt2-64/") == "gpt2-64"
    assert short_name("/data/tasks/reverse.jsonl") == "reverse.jsonl"
    assert short_name("facebook/opt-350m") == "facebook/opt-350m"


def test_colliding_names_take_parent_folders_until_unique():
    names = display_names(["/a/x/models/gpt2", "/b/x/models/gpt2", "/c/llama", "gpt2", "zoo/t5-small"])
    assert names == {"/a/x/models/gpt2": "a/x/models/gpt2", "/b/x/models/gpt2": "b/x/models/gpt2",
                     "/c/llama": "llama", "gpt2": "gpt2", "zoo/t5-small": "zoo/t5-small"}
    assert display_names(["/runs/one/gpt2", "/runs/two/gpt2"]) == {
        "/runs/one/gpt2": "one/gpt2", "/runs/two/gpt2": "two/gpt2"}


def test_overrides_match_full_name_trailing_parts_or_short_name():
    full = ["/data/models/gpt2-64", "/data/models/llama-64", "/data/tasks/pairs.jsonl"]
    names = display_names(full, {"models/gpt2-64": "GPT-2", "llama-64": "Llama", full[2]: "pairs"})
    assert names == dict(zip(full, ["GPT-2", "Llama", "pairs"]))


@pytest.mark.parametrize("overrides, match", [
    ({"a": ""}, "non-empty"), (["a"], "must map"), ({"/m/a": "x", "/m/b": "x"}, "several names"),
])
def test_bad_overrides_name_the_argument(overrides, match):
    with pytest.raises(ConfigError, match=match):
        display_names(["/m/a", "/m/b"], overrides)


def test_with_display_names_keeps_full_paths_and_does_not_mutate():
    table = pd.DataFrame({"model": ["/m/a/gpt2", "/m/b/gpt2"], "dataset": ["/d/t.jsonl"] * 2})
    before = table.copy()
    shown = with_display_names(table)
    pd.testing.assert_frame_equal(table, before)
    assert list(shown["model"]) == ["a/gpt2", "b/gpt2"] and list(shown["dataset"]) == ["t.jsonl"] * 2
    assert list(shown["model_path"]) == list(table["model"])
    assert with_display_names(shown)["model"].tolist() == ["a/gpt2", "b/gpt2"]  # idempotent


def _store(path, models, dataset, sizes=(0, 100, 200, 400, 800, 1600)):
    from lensllm_nb.collection.store import ResultsStore

    with ResultsStore(path) as store:
        for i, model in enumerate(models):
            for n in sizes:
                store.upsert({"model": model, "dataset": dataset, "n_train": n, "seed": 0, "status": "ok",
                              "config_hash": "c0", "test_loss": 1.0 + (i + 1) * (n + 10) ** -0.3,
                              "params": 1000 * (i + 1), "ntk": {"trace": float(i)}})


def test_store_curves_show_short_names_and_accept_short_or_full(tmp_path):
    models = ["/work/models/gpt2-64", "/work/models/llama-64", "/work/other/gpt2-64"]
    _store(tmp_path / "r.db", models, "/work/tasks/pairs.jsonl")
    table = load_curves(store=str(tmp_path / "r.db"))
    assert sorted(table["model"].unique()) == ["llama-64", "models/gpt2-64", "other/gpt2-64"]
    assert sorted(table["model_path"].unique()) == models
    for dataset in ("pairs.jsonl", "/work/tasks/pairs.jsonl"):
        data = prepare_curves(store=str(tmp_path / "r.db"), dataset=dataset, models=[models[1], "other/gpt2-64"])
        assert data.dataset == "pairs.jsonl" and data.models == ["llama-64", "other/gpt2-64"]
    named = prepare_curves(store=str(tmp_path / "r.db"), names={"llama-64": "Llama"})
    assert "Llama" in named.models
    assert stored_ntk(str(tmp_path / "r.db"), named, {"llama-64": "Llama"})["Llama"] == {"trace": 1.0}


def test_a_costly_budget_is_said_in_notebook_03_select_and_the_index(tmp_path, capsys):
    from lensllm_nb.cli import main
    from lensllm_nb.workflow.recommendation import answer_selection

    store = str(tmp_path / "r.db")
    _store(store, ["/w/a", "/w/b", "/w/c"], "/w/t.jsonl", sizes=(0, 10, 20, 40, 400, 1600))
    # (10+20+40+400)/1600 of every candidate's full run = 29%; up to 40 it is 4%, within 1/8
    line = prepare_curves(store=store, max_train=400, target=1600).describe(cost=True).splitlines()[1]
    assert line.startswith("Budget: the sizes ≤ 400 cost 29%") and "max_train) of 40 stays within it" in line
    assert len(prepare_curves(store=store, max_train=40, target=1600).describe(cost=True).splitlines()) == 1
    answer = answer_selection(load_curves(store=store), max_train=400, target=1600)
    assert answer.budget == line and line.replace("≤", "&le;") in answer.to_html().replace("≤", "&le;")
    assert answer_selection(load_curves(store=store), max_train=40, target=1600).budget is None
    curves = tmp_path / "curves.csv"
    load_curves(store=store).to_csv(curves, index=False)
    assert main(["select", str(curves), "--max-train", "400", "--target", "1600", "--format", "json"]) == 0
    assert capsys.readouterr().err.strip() == line


def test_a_backslash_alone_makes_no_path():
    # A model named with TeX (or any backslash) is a name, not a Windows path: it is shown whole.
    from lensllm_nb.collection.display_names import is_path_name, short_name

    name = "<img src=x> tex$\\frac{a}{b}$_{x} 5"
    assert not is_path_name(name) and short_name(name) == name
    assert is_path_name("C:\\data\\models\\gpt2") and short_name("C:\\data\\models\\gpt2") == "gpt2"
