"""The LensLLM law with t from the runs (ntk_law), its selector variants, and the zoo corpus."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.analysis import published_curves as benchmarks
from lensllm_nb.workflow.notebook_curves import load_curves
from lensllm_nb.errors import ConfigError
from lensllm_nb.analysis.laws import RectifiedLaw
from lensllm_nb.analysis.ntk_features import NTKFeatures
from lensllm_nb.analysis.ntk_law import LensLLMStepsLaw
from lensllm_nb.analysis.predict import PREDICTIVE_METHODS, predict_candidates
from lensllm_nb.analysis.selection import LENSLLM_NOTES, LensLLMSelector, make_selector
from lensllm_nb.analysis.visible import visible_from_valid
from lensllm_nb.collection.store import ResultsStore

SIZES = np.array([16, 32, 64, 128, 256, 512, 1024], dtype=float)
STEPS = 2 * np.ceil(SIZES / 8)  # 2 epochs of batches of 8


def _features(scale=1.0, f0=3.0):
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 6))
    return NTKFeatures.from_gram(scale * g @ g.T, f0=np.full(6, f0))


def test_fit_recovers_the_parameters_of_a_curve_made_by_the_law():
    feats = _features()
    B, beta, E = 40.0, 0.6, 2.5
    F = feats.F(STEPS, 0.01)
    L = B / (F + SIZES ** beta) + E
    law = LensLLMStepsLaw(ntk=feats).fit(SIZES, L, STEPS, lr=0.01)
    assert law.success_ and law.rmse_log_ < 1e-6
    assert law.params_ == pytest.approx({"B": B, "beta": beta, "E": E}, rel=1e-3)
    # F is read off the NTK at each point: it shrinks along the curve as runs train longer.
    assert np.all(np.diff(law.F_) < 0) and law.F_[0] < feats.F(0.0)
    # The target has no run: its steps come from the runs' log-log line (exact here).
    assert law.steps_at(4096) == pytest.approx(1024)
    assert law.predict(4096) == pytest.approx(B / (feats.F(1024, 0.01) + 4096 ** beta) + E, rel=1e-3)


def test_the_zero_shot_loss_is_the_laws_point_at_zero_data_and_identifies_it_from_three_sizes():
    # L(0) = B / F(Θ, 0) + E: with it, 3 sizes leave one residual degree of freedom (study Z).
    feats = _features()
    B, beta, E = 40.0, 0.6, 2.5
    L = B / (feats.F(STEPS, 0.01) + SIZES ** beta) + E
    zero = B / feats.F(0.0) + E
    law = LensLLMStepsLaw(ntk=feats).fit(SIZES[:3], L[:3], STEPS[:3], lr=0.01, zero_shot=zero)
    assert law.success_ and law.dof_ == 1 and law.rmse_log_ < 1e-6
    assert law.params_ == pytest.approx({"B": B, "beta": beta, "E": E}, rel=1e-3)
    assert law.predict(1024) == pytest.approx(L[-1], rel=1e-3)
    # The RMSE is over the fine-tuned sizes only; a zero-shot loss off the law shows up in the fit.
    off = LensLLMStepsLaw(ntk=feats).fit(SIZES, L, STEPS, lr=0.01, zero_shot=2 * zero)
    assert off.dof_ == 5 and off.rmse_log_ > 1e-3
    assert LensLLMStepsLaw(ntk=feats).fit(SIZES[:3], L[:3], STEPS[:3], lr=0.01).dof_ == 0


def test_the_selector_does_not_extrapolate_a_rising_curve_with_the_law_and_keeps_its_last_loss():
    # The shrinking F can fit a rise exactly, then extrapolate a fall no visible point is in (study LZ1:
    # zoo/t5-small on the demo store went 6.105 -> 6.160 over 8..128 and was predicted 4.51 at 2,048).
    table = _table()
    table.loc[table["model"] == "b", "test_loss"] = table.loc[table["model"] == "b", "n_train"].map(
        lambda n: 6.0 if n == 0 else 4.0 + 0.01 * np.log2(max(n, 1)))
    visible = _visible(table)
    with pytest.warns(UserWarning, match="rises with size"):
        sel = LensLLMSelector().fit_visible(visible)
    assert sel.variant_ == "steps"
    assert sel.predictions_["b"] == pytest.approx(visible.losses[visible.models.index("b")][-1])


@pytest.mark.parametrize("zero", [0.0, -1.0, float("nan"), "5"])
def test_a_bad_zero_shot_loss_is_refused_by_name(zero):
    with pytest.raises(ConfigError, match="`zero_shot`"):
        LensLLMStepsLaw(ntk=_features()).fit(SIZES, np.linspace(4, 3, 7), STEPS, zero_shot=zero)


def test_eta_defaults_to_the_runs_learning_rate():
    feats = _features()
    L = 40.0 / (feats.F(STEPS, 0.002) + SIZES ** 0.5) + 2.0
    assert LensLLMStepsLaw(ntk=feats).fit(SIZES, L, STEPS, lr=0.002).eta_ == 0.002
    assert LensLLMStepsLaw(ntk=feats).fit(SIZES, L, STEPS).eta_ == 0.01  # the authors' value when unknown
    assert LensLLMStepsLaw(ntk=feats, eta=0.5).fit(SIZES, L, STEPS, lr=0.002).eta_ == 0.5


@pytest.mark.parametrize("change, match", [
    ({"steps": -STEPS}, "`steps`"),
    ({"L": -np.ones(7)}, "`L`"),
    ({"D": SIZES[:3], "L": np.ones(3) * 3, "steps": np.zeros(3)}, "`steps`"),
])
def test_bad_curves_are_refused_by_name(change, match):
    args = {"D": SIZES, "L": np.linspace(4, 3, 7), "steps": STEPS, **change}
    with pytest.raises(ConfigError, match=match):
        LensLLMStepsLaw(ntk=_features()).fit(args["D"], args["L"], args["steps"])


def test_the_law_needs_ntk_features():
    with pytest.raises(ConfigError, match="`ntk`"):
        LensLLMStepsLaw().fit(SIZES, np.linspace(4, 3, 7), STEPS)


def _table(with_ntk=True):
    rows, ntk = [], {}
    for i, (model, beta) in enumerate((("a", 0.5), ("b", 0.3), ("c", 0.7), ("d", 0.4))):
        feats = _features(0.005 * (1 + i), f0=1.0)  # F decays over hundreds of steps: falling curves, as real ones
        ntk[model] = feats
        for n in (0, *SIZES.astype(int), 4096):
            steps = 0 if n == 0 else 2 * int(np.ceil(n / 8))
            loss = 6.0 if n == 0 else 30.0 / (feats.F(steps, 0.01) + n ** beta) + 3.0 + 0.1 * i
            rows.append({"model": model, "dataset": "t", "n_train": n, "seed": 0, "test_loss": loss,
                         "steps": steps, "lr": 0.01})
    table = pd.DataFrame(rows)
    if with_ntk:
        table.attrs["ntk"] = {"t": ntk}
    return table


def _visible(table, max_train=512):
    return visible_from_valid(table[table["n_train"] <= max_train], max_train=max_train, target=4096)


def test_the_selector_finds_the_features_the_table_carries_and_says_what_ran():
    steps = LensLLMSelector().fit_visible(_visible(_table()))
    fitted_t = LensLLMSelector(variant="fitted_t").fit_visible(_visible(_table()))
    plain = LensLLMSelector().fit_visible(_visible(_table(with_ntk=False)))
    rectified = make_selector("rectified").fit_visible(_visible(_table()))
    assert (steps.variant_, fitted_t.variant_, plain.variant_) == ("steps", "fitted_t", "rectified")
    assert set(LENSLLM_NOTES) == {"steps", "fitted_t", "rectified"}
    # Without features it is the rectified law; t from the runs is another law.
    np.testing.assert_allclose(plain.predictions_, rectified.predictions_)
    assert np.all(np.abs(steps.predictions_ - rectified.predictions_) > 1e-6)
    # t fitted bounds D_l by F(Θ, 0), which binds here (F(0) = 6, small), so it is not rectified either.
    assert not np.allclose(fitted_t.predictions_, rectified.predictions_)


def test_t_fitted_is_the_rectified_law_when_f0_is_far_above_the_fitted_d_l():
    table = _table()
    table.attrs["ntk"] = {"t": {m: NTKFeatures.from_gram(f.gram, f0=np.full(6, 1e3)) for m, f in
                                table.attrs["ntk"]["t"].items()}}
    fitted_t = LensLLMSelector(variant="fitted_t").fit_visible(_visible(table))
    np.testing.assert_allclose(fitted_t.predictions_, make_selector("rectified").fit_visible(_visible(table)).predictions_)


def test_three_points_without_a_zero_shot_loss_leave_the_steps_law_no_freedom_so_it_is_the_ats_line():
    # B, β, E on 3 points interpolate: the NTK term is not identified, lensllm is the AtS line there.
    table = _table()
    visible = _visible(table[table["n_train"] > 0], max_train=64)
    with pytest.warns(UserWarning, match="interpolates"):
        selector = LensLLMSelector().fit_visible(visible)
    assert selector.variant_ == "steps" and selector.interpolating_ == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="interpolates"):
        rectified = make_selector("rectified").fit_visible(visible)
    np.testing.assert_allclose(selector.predictions_, make_selector("ats").fit_visible(visible).predictions_)
    np.testing.assert_allclose(selector.predictions_, rectified.predictions_)
    law = LensLLMStepsLaw(ntk=_features()).fit(SIZES[:3], np.array([4.0, 3.5, 3.3]), STEPS[:3])
    assert law.dof_ == 0
    # With a fourth size the law has a residual degree of freedom and is used.
    assert LensLLMSelector().fit_visible(_visible(table[table["n_train"] > 0], max_train=128)).interpolating_ == []


def test_with_zero_shot_losses_three_points_identify_the_law_and_it_is_not_the_rectified_law():
    visible = _visible(_table(), max_train=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rectified interpolates its 3 points
        anchored = LensLLMSelector().fit_visible(visible)
        plain = LensLLMSelector(zero_shot_anchor=False).fit_visible(visible)
        rectified = make_selector("rectified").fit_visible(visible)
    assert anchored.interpolating_ == [] and plain.interpolating_ == ["a", "b", "c", "d"]
    assert np.all(np.abs(np.log(anchored.predictions_ / rectified.predictions_)) > 1e-6)


def test_an_unknown_variant_is_refused():
    with pytest.raises(ConfigError, match="`variant`"):
        LensLLMSelector(variant="free").fit_visible(_visible(_table()))


def test_a_law_through_as_many_points_as_parameters_falls_back_to_the_ats_line():
    # Four points, bent at the last: the 4-parameter law fell from 2.5 to 0.9 over 8x the data.
    rows = [{"model": m, "dataset": "x", "n_train": n, "seed": 0, "test_loss": l}
            for m, ls in {"a": [3.0, 2.98, 2.9, 2.5], "b": [3.1, 3.0, 2.9, 2.8], "c": [2.9, 2.85, 2.83, 2.8]}.items()
            for n, l in zip([16, 32, 64, 128, 1024], [*ls, ls[-1] * 0.95])]
    visible = visible_from_valid(pd.DataFrame(rows).query("n_train <= 128"), max_train=128, target=1024)
    with pytest.warns(UserWarning, match="interpolates"):
        law = make_selector("rectified").fit_visible(visible)
    ats = make_selector("ats").fit_visible(visible)
    assert law.interpolating_ == ["a", "b", "c"]
    np.testing.assert_allclose(law.predictions_, ats.predictions_)


# ------------------------------------------------------------------ the corpus
@pytest.fixture(scope="module")
def corpus():
    return benchmarks.load("zoo_corpus")


def test_the_corpus_has_every_candidate_on_every_task_with_steps_lr_and_features(corpus):
    assert corpus["dataset"].nunique() >= 3 and corpus["model"].nunique() >= 8
    for dataset, part in corpus.groupby("dataset"):
        sizes = part.groupby("model")["n_train"].apply(lambda s: tuple(sorted(s)))
        assert set(sizes) == {(0, 16, 32, 64, 128, 256, 512, 1024, 4096)}, dataset
        assert part["steps"].notna().all() and part["lr"].notna().all()
        assert set(corpus.attrs["ntk"][dataset]) == set(part["model"])
    # Steps follow each task's settings: its epochs of batches of 8.
    positive = corpus[corpus["n_train"] > 0]
    assert (positive["steps"] == positive["epochs"] * np.ceil(positive["n_train"] / 8)).all()


def _small_store(corpus, path, dataset="zoo-name", n_models=4):
    part = corpus[(corpus["dataset"] == dataset) & (corpus["n_train"] <= 1024)]
    models = sorted(part["model"].unique())[:n_models]
    with ResultsStore(str(path)) as store:
        for row in part[part["model"].isin(models)].to_dict("records"):
            feats = corpus.attrs["ntk"][dataset][row["model"]].to_dict()
            store.upsert({"model": row["model"], "dataset": dataset, "n_train": int(row["n_train"]), "seed": 0,
                          "config_hash": "c0", "status": "ok", "test_loss": float(row["test_loss"]),
                          "steps": int(row["steps"]), "params": int(row["params"]),
                          "config": {"lr": float(row["lr"])}, "ntk": feats})
    return models


@pytest.mark.parametrize("method", PREDICTIVE_METHODS)
def test_every_select_method_gives_finite_plausible_numbers_on_a_small_real_store(corpus, tmp_path, method):
    _small_store(corpus, tmp_path / "runs.db")
    table = load_curves(store=str(tmp_path / "runs.db"))
    assert table.attrs["ntk"]["zoo-name"]  # the store's features travel with its table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = predict_candidates(table, max_train=128, target=1024, method=method).frame
    _check_finite(frame)
    losses = table["test_loss"]
    # Plausible: intervals within a factor 3 of the measured losses, regret below the largest loss.
    assert frame["low"].min() > losses.min() / 3 and frame["high"].max() < 3 * losses.max()
    assert frame["expected_regret"].max() < losses.max()


@pytest.mark.parametrize("method", PREDICTIVE_METHODS)
def test_every_select_method_stays_where_a_learning_curve_can_go_from_3_sizes(corpus, tmp_path, method):
    # zoo-args from 16, 32, 64 to 1,024 (4 doublings): `lensllm` gave 0.027-402.6 here before
    # study W censored the engine's t to the learning-curve envelope.
    _small_store(corpus, tmp_path / "runs.db", dataset="zoo-args")
    table = load_curves(store=str(tmp_path / "runs.db"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = predict_candidates(table, max_train=64, target=1024, method=method)
    _check_finite(res.frame)
    seen = table[table["n_train"].between(1, 64)].sort_values("n_train").groupby("model")["test_loss"]
    frame = res.frame.set_index("model")
    # Never below the 1/n floor (halved for noise), never above twice the worst loss seen.
    assert (frame["low"] >= seen.last().reindex(frame.index) / 16 / 2).all()
    assert (frame["high"] <= 2 * seen.max().reindex(frame.index)).all()
    assert (frame["predicted"].between(frame["low"], frame["high"])).all()
    assert frame["expected_regret"].max() < np.log(16)


@pytest.mark.parametrize("method", PREDICTIVE_METHODS)
def test_every_select_method_gives_finite_ordered_numbers_on_a_small_real_store(corpus, tmp_path, method):
    _small_store(corpus, tmp_path / "runs.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _check_finite(predict_candidates(load_curves(store=str(tmp_path / "runs.db")), max_train=128,
                                         target=1024, method=method).frame)


def test_cli_select_reads_a_store_with_its_ntk_features_and_says_what_lensllm_ran(corpus, tmp_path):
    _small_store(corpus, tmp_path / "runs.db", dataset="zoo-args")
    run = lambda *a: subprocess.run([sys.executable, "-m", "lensllm_nb.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, check=True, cwd=tmp_path)
    run("export", "runs.db", "--out", "curves.csv")
    args = ("--max-train", "64", "--target", "1024", "--method", "lensllm")
    assert "lensllm: t from the runs" in run("select", "runs.db", *args).stdout
    assert "lensllm: no NTK features: this is the rectified law" in run("select", "curves.csv", *args).stdout
    args += ("--format", "json")
    from_store, from_csv = run("select", "runs.db", *args), run("select", "curves.csv", *args)
    store_pred = {m["model"]: m["predicted"] for m in json.loads(from_store.stdout)["models"]}
    csv_pred = {m["model"]: m["predicted"] for m in json.loads(from_csv.stdout)["models"]}
    assert store_pred.keys() == csv_pred.keys()
    assert all(abs(np.log(store_pred[m] / csv_pred[m])) > 1e-3 for m in store_pred)


def test_the_cli_knows_a_store_by_its_url_or_sqlite_header_and_masks_its_password(tmp_path):
    from lensllm_nb.cli.core import _is_store, _one_dataset

    (tmp_path / "curves.csv").write_text("model,dataset,n_train,seed,test_loss\n")
    with ResultsStore(str(tmp_path / "runs.db")):
        pass
    assert _is_store(str(tmp_path / "runs.db")) and _is_store("postgresql://ann:s3cret@db/runs")
    assert not _is_store(str(tmp_path / "curves.csv")) and not _is_store("flan")
    two = pd.DataFrame({"dataset": ["a", "b"]})
    with pytest.raises(ConfigError, match="several datasets") as err:
        _one_dataset(two, "postgresql://ann:s3cret@db/runs")
    assert "s3cret" not in str(err.value)


def _check_finite(frame):
    assert np.isfinite(frame[["predicted", "low", "high", "expected_regret"]].to_numpy()).all()
    assert (frame["low"] <= frame["predicted"]).all() and (frame["predicted"] <= frame["high"]).all()


def test_cli_benchmark_of_the_corpus_lensllm_differs_from_rectified_wherever_ntk_features_exist(corpus):
    # Issue 20's acceptance, as a user runs it: every dataset, the default ratios, offline.
    out = subprocess.run([sys.executable, "-m", "lensllm_nb.cli", "benchmark", "zoo_corpus", "--level", "0.9",
                          "--format", "json"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert "lensllm" in {row["method"] for row in doc["summary"]}
    assert sorted(d["dataset"] for d in doc["datasets"]) == sorted(corpus["dataset"].unique())
    for entry in doc["datasets"]:
        preds = pd.DataFrame(entry["predictions"])
        # The default ratios that leave >= 3 sizes visible: 64 leaves 16, 32, 64.
        assert sorted(preds["ratio"].unique()) == [8, 16, 32, 64], entry["dataset"]
        wide = preds[preds["method"].isin(["lensllm", "rectified"])].pivot_table(
            index=["ratio", "model"], columns="method", values="predicted")
        n_models = corpus[corpus["dataset"] == entry["dataset"]]["model"].nunique()
        assert len(wide) == 4 * n_models and set(corpus.attrs["ntk"][entry["dataset"]]) == set(preds["model"])
        # Every candidate has its zero-shot loss, the law's point D = 0, so even the 3 sizes of
        # ratio 64 leave B, β, E a residual degree of freedom (rectified falls back to the AtS line).
        gap = np.abs(np.log(wide["lensllm"] / wide["rectified"]))
        assert (gap > 1e-6).all(), entry["dataset"]


def test_notebooks_say_what_the_lensllm_term_is():
    from lensllm_nb.workflow.tables import lensllm_note

    assert lensllm_note(None) == "no NTK features: this is the rectified law"
    assert "bounded by F(Θ, 0)" in lensllm_note({"m": object()}) and "from the runs" in lensllm_note({"m": 1})
    assert lensllm_note(None, law="vanilla") == "the vanilla law has no NTK term"


def test_the_corpus_adds_candidates_and_tasks_and_leaves_the_demo_zoo_alone():
    from lensllm_nb.collection import resolve as sources, zoo, zoo_tasks

    assert zoo.names() == ["zoo/" + n for n in ("gpt2-tiny", "t5-small", "neox-small", "llama-small", "gpt2-wide",
                                                 "llama-tiny")]
    assert zoo.corpus_names()[:6] == zoo.names() and len(zoo.corpus_names()) == 8
    assert not set(zoo.CORPUS_CANDIDATES) & set(zoo.CANDIDATES)
    for name in zoo_tasks.TASKS:
        task = sources.load_task(name)
        assert task.name == name and task.n_pool >= 4096
        # Task text comes only from the task modules, which no candidate was pretrained on.
        assert all(zoo.is_task_module(row["module"]) for row in zoo_tasks.task_rows(name))
    with pytest.raises(ConfigError, match="`name`"):
        zoo_tasks.task_rows("zoo-other")


def test_notebook_02_finds_the_features_a_packaged_set_carries():
    from lensllm_nb.workflow.notebook_curves import prepare_curves, stored_ntk

    curves = prepare_curves("zoo_corpus", dataset="zoo-args", default_ratio=1)
    assert set(stored_ntk("", curves)) == set(curves.models) and len(curves.models) == 8
