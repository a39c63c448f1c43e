"""Subset fine-tuning on the offline zoo: grid, resume, failures, settings, bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.collection import finetune, zoo
from lensllm_nb.collection.data import TaskData
from lensllm_nb.collection.finetune import FineTuner, resolve_device, run_grid
from lensllm_nb.collection.store import ResultsStore
from lensllm_nb.errors import ConfigError, FinetuneError


GRID_MODELS = ("zoo/t5-small", "zoo/neox-small")
GRID_SIZES = (0, 16, 64, 256, 1024)
# Few steps: these tests check mechanics, not learning. Every weight is trained
# (the demo fine-tunes LoRA adapters; LoRA has tests of its own below).
QUICK = {**zoo.DEMO_SETTINGS, "lora": False, "max_steps": 3, "progress": False}
LORA = {**QUICK, "lora": True}


@pytest.fixture(scope="module")
def task(zoo_models):
    return zoo.task_data()


@pytest.fixture(scope="module")
def grid(zoo_models, task, tmp_path_factory):
    """2 candidates × 5 sizes with the demo settings, stored once for the module."""
    path = tmp_path_factory.mktemp("grid") / "results.db"
    for model in GRID_MODELS:
        run_grid(model, task, GRID_SIZES, [0], path, progress=False, **zoo.DEMO_SETTINGS)
    with ResultsStore(path) as store:
        yield path, store.runs()


# ----------------------------------------------------------------------- grid
def test_grid_stores_every_run(grid):
    _, runs = grid
    assert len(runs) == len(GRID_MODELS) * len(GRID_SIZES)
    assert (runs["status"] == "ok").all()
    assert set(runs["model"]) == set(GRID_MODELS) and set(runs["dataset"]) == {"zoo"}
    for _, row in runs.iterrows():
        trained = row["n_train"] > 0
        per_epoch = math.ceil(row["n_train"] / zoo.DEMO_SETTINGS["batch_size"])
        assert row["steps"] == (zoo.DEMO_SETTINGS["epochs"] * per_epoch if trained else 0)
        assert (row["tokens"] > 0) == trained
        assert row["flops"] == pytest.approx(6 * row["params"] * row["tokens"])
        assert (row["train_loss"] > 0) if trained else np.isnan(row["train_loss"])
        assert row["wall_seconds"] > 0 and row["device"] == "cpu"
        assert row["versions"]["torch"].startswith("2.13")
        assert row["config"]["lr"] == zoo.DEMO_SETTINGS["lr"]
        assert row["config"]["task"]["fingerprint"]
    # One config hash per model: every size of a grid shares its settings.
    assert runs.groupby("model")["config_hash"].nunique().eq(1).all()
    assert runs.groupby("model")["family"].first().to_dict() == {
        "zoo/neox-small": "gpt_neox", "zoo/t5-small": "t5",
    }


def test_losses_fall_with_n_train(grid):
    _, runs = grid
    mean = runs.groupby("n_train")["test_loss"].mean()
    # LoRA adapters adapt the model rather than re-train it: on the demo task the
    # loss falls a few percent from zero-shot to 1,024 examples, and the first
    # small subsets may barely move it (t5-small rises a little up to 64).
    assert mean.loc[1024] < mean.loc[256] < mean.loc[[0, 16, 64]].min(), mean.to_dict()
    assert mean.loc[1024] < 0.98 * mean.loc[0]


def test_grid_resumes_without_loading_the_model(grid, task):
    path, runs = grid
    tuner = FineTuner(GRID_MODELS[0], progress=False, **zoo.DEMO_SETTINGS)
    table = tuner.grid(task, GRID_SIZES, [0], path)
    assert table.empty
    assert tuner.grid_summary_ == {"run": 0, "skipped": len(GRID_SIZES), "failed": 0}
    assert not hasattr(tuner, "model_")
    with ResultsStore(path) as store:
        pd.testing.assert_frame_equal(store.runs(), runs)


# ------------------------------------------------------------------ one run
def test_weights_are_restored_between_runs(task):
    tuner = FineTuner("zoo/gpt2-tiny", **QUICK)
    before = tuner.run(task, 0)["test_loss"]
    trained = tuner.run(task, 64)["test_loss"]
    assert trained != before
    assert tuner.run(task, 0)["test_loss"] == before


def test_gradient_accumulation_matches_a_larger_batch(task):
    settings = {**QUICK, "max_steps": None, "epochs": 1}
    whole = FineTuner("zoo/gpt2-tiny", **{**settings, "batch_size": 16}).run(task, 32)
    split = FineTuner("zoo/gpt2-tiny", **{**settings, "batch_size": 8, "grad_accum": 2}).run(task, 32)
    assert whole["steps"] == split["steps"] == 2
    assert split["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-5)
    assert split["config_hash"] != whole["config_hash"]


def test_lora_trains_adapters_only(task, zoo_models):
    full = FineTuner("zoo/gpt2-tiny", **QUICK)
    lora = FineTuner("zoo/gpt2-tiny", **{**LORA, "lora_r": 4})
    zero_full, zero_lora = full.run(task, 0), lora.run(task, 0)
    # LoRA starts as the identity (B = 0): the zero-shot loss is the model's own.
    assert zero_lora["test_loss"] == pytest.approx(zero_full["test_loss"], rel=1e-6)
    row = lora.run(task, 16)
    assert row["trainable_params"] < row["params"] / 5
    assert row["test_loss"] != zero_lora["test_loss"]
    assert row["config"]["lora"]["r"] == 4 and row["config_hash"] != zero_full["config_hash"]


def test_early_stopping_keeps_the_best_weights(task):
    tuner = FineTuner("zoo/gpt2-tiny", **{**QUICK, "max_steps": 40, "lr": 0.05},
                      early_stopping_patience=1, eval_steps=2)
    row = tuner.run(task, 16)
    assert row["best_step"] is not None and row["val_loss"] > 0
    assert row["steps"] < 40  # patience ran out before max_steps
    assert row["steps"] == row["best_step"] + 2
    # The weights left in the model (and tested) are the best ones, not the last.
    val, _ = tuner._evaluate(tuner._tokenized(task).validation)
    assert val == pytest.approx(row["val_loss"], rel=1e-6)


def test_early_stopping_needs_a_validation_split(zoo_models):
    task = zoo.task_data(val_size=0)
    with pytest.raises(ConfigError, match="val_size"):
        FineTuner("zoo/gpt2-tiny", early_stopping_patience=2, **QUICK).run(task, 16)


def test_bf16_autocast_runs_on_cpu(task):
    fp32 = FineTuner("zoo/gpt2-tiny", **QUICK).run(task, 0)
    bf16 = FineTuner("zoo/gpt2-tiny", precision="bf16", **QUICK).run(task, 0)
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["test_loss"] == pytest.approx(fp32["test_loss"], rel=0.02)
    assert bf16["config_hash"] != fp32["config_hash"]


def test_ntk_features_are_computed_once_per_model(task, tmp_path):
    table = run_grid("zoo/gpt2-tiny", task, [0, 16], [0], tmp_path / "r.db",
                     ntk_probe=4, ntk_sketch_dim=256, **QUICK)
    first, second = table["ntk"]
    assert np.array(first["gram"]).shape == (4, 4)
    assert first == second  # one computation, stored with every run
    with ResultsStore(tmp_path / "r.db") as store:
        assert store.runs()["ntk"][0]["sketch_dim"] == 256


# ------------------------------------------------------------------ failures
def test_failed_runs_are_recorded_and_the_grid_continues(task, tmp_path, monkeypatch):
    original = FineTuner._train

    def flaky(self, tokenized, indices, seed):
        if len(indices) == 16:
            raise RuntimeError("simulated crash")
        return original(self, tokenized, indices, seed)

    monkeypatch.setattr(FineTuner, "_train", flaky)
    path = tmp_path / "r.db"
    tuner = FineTuner("zoo/gpt2-tiny", **QUICK)
    table = tuner.grid(task, [0, 16, 32], [0], path)
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert tuner.grid_summary_["failed"] == 1
    with ResultsStore(path) as store:
        failed = store.runs(status="failed")
        assert len(failed) == 1 and "simulated crash" in failed["error"][0]
        assert len(store.runs(status="ok")) == 2

    with pytest.raises(FinetuneError, match="simulated crash"):
        tuner.grid(task, [0, 16, 32], [0], path, on_error="raise")

    monkeypatch.setattr(FineTuner, "_train", original)
    tuner.grid(task, [0, 16, 32], [0], path)  # the retry replaces the failure
    assert tuner.grid_summary_ == {"run": 1, "skipped": 2, "failed": 0}
    with ResultsStore(path) as store:
        assert (store.runs()["status"] == "ok").all()


# ------------------------------------------------------------------ settings
def test_config_hash_covers_what_changes_results(task):
    base = FineTuner("zoo/gpt2-tiny", **QUICK).config(task)
    same = FineTuner("zoo/gpt2-tiny", eval_batch_size=7, device="cpu", **QUICK).config(task)
    other = FineTuner("zoo/gpt2-tiny", **{**QUICK, "lr": 1e-4}).config(task)
    assert base == same
    assert base != other
    assert base["precision"] == "fp32" and base["epochs"] is None  # max_steps wins
    assert base["model_revision"]


def test_device_resolution():
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="'auto', 'cpu', 'cuda'"):
        resolve_device("tpu")


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="needs a machine without a GPU"
)
def test_cuda_without_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="sees no GPU"):
        resolve_device("cuda")


def test_settings_are_not_modified(task):
    settings = dict(QUICK)
    before = dict(settings)
    run_grid("zoo/gpt2-tiny", task, [0], [0], None, **settings)
    assert settings == before


# ------------------------------------------------------------------ bad input
BAD = [
    ({"model": "zoo/no-such-model"}, "not a zoo candidate"),
    ({"model": "./no/such/folder"}, "not an existing folder"),
    ({"model": "no-such-org/no-such-model-xyz"}, "Hugging Face Hub"),
    ({"sizes": [0, 100_000]}, "only"),
    ({"sizes": [0, 1.5]}, "whole numbers"),
    ({"sizes": [-16]}, "non-negative"),
    ({"seeds": [-1]}, "seeds"),
    ({"settings": {"lr": -1.0}}, "lr"),
    ({"settings": {"epochs": 0, "max_steps": None}}, "epochs"),
    ({"settings": {"precision": "fp16"}}, "precision"),
    ({"settings": {"ntk_probe": 10**6}}, "ntk_probe"),
    ({"on_error": "ignore"}, "on_error"),
]
if not __import__("torch").cuda.is_available():
    BAD.append(({"settings": {"device": "cuda"}}, "sees no GPU"))


@pytest.mark.parametrize("change, message", BAD)
def test_bad_input_writes_nothing(task, tmp_path, change, message):
    args = {"model": "zoo/gpt2-tiny", "sizes": [0, 16], "seeds": [0], "on_error": "continue",
            "settings": {}, **change}
    path = tmp_path / "results.db"
    with pytest.raises(ConfigError, match=message):
        run_grid(args["model"], task, args["sizes"], args["seeds"], path,
                 on_error=args["on_error"], **{**QUICK, **args["settings"]})
    assert not path.exists()


def test_bad_input_leaves_an_existing_store_unchanged(task, tmp_path):
    path = tmp_path / "results.db"
    run_grid("zoo/gpt2-tiny", task, [0], [0], path, **QUICK)
    with ResultsStore(path) as store:
        before = store.runs()
    with pytest.raises(ConfigError):
        run_grid("zoo/gpt2-tiny", task, [0, 16, 10**6], [0], path, **QUICK)
    with ResultsStore(path) as store:
        pd.testing.assert_frame_equal(store.runs(), before)


def test_dataset_without_needed_columns(zoo_models, tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = {"question": [f"q{i}" for i in range(20)], "answer": [f"a{i}" for i in range(20)]}
    pd.DataFrame(rows).to_json(data, orient="records", lines=True)
    with pytest.raises(ConfigError, match="'question', 'answer'"):
        run_grid("zoo/gpt2-tiny", str(data), [0], [0], tmp_path / "r.db", **QUICK)
    assert not (tmp_path / "r.db").exists()


def test_model_that_cannot_load_writes_nothing(zoo_models, tmp_path, task):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(zoo_models[0].path, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FinetuneError, match="could not be loaded"):
        run_grid(str(broken), task, [0], [0], tmp_path / "r.db", **QUICK)
    assert not (tmp_path / "r.db").exists()


def test_sequences_longer_than_the_model_takes(zoo_models, tmp_path):
    rows = [{"input": f"word{i} " * 200, "target": "summary " * 50} for i in range(30)]
    task = TaskData.from_records(rows, name="long", test_size=5)
    path = tmp_path / "r.db"
    settings = {**QUICK, "max_input_length": 128, "max_target_length": 64}
    with pytest.raises(ConfigError, match="at most 128 tokens"):
        run_grid("zoo/gpt2-tiny", task, [0, 16], [0], path, **settings)
    assert not path.exists()
    # Within the budget the same task runs.
    row = FineTuner("zoo/gpt2-tiny", **{**settings, "max_input_length": 64}).run(task, 0)
    assert row["test_loss"] > 0


def test_model_revision_follows_the_weights_not_only_their_size(zoo_models, tmp_path, task):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "copy"
    shutil.copytree(zoo_models[0].path, folder)
    before = FineTuner(str(folder), **QUICK).config(task)["model_revision"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(folder)  # same files, same sizes, other weights
    after = FineTuner(str(folder), **QUICK).config(task)["model_revision"]
    assert after != before


def test_lora_targets_that_do_not_exist(task, tmp_path):
    with pytest.raises(ConfigError, match="lora_target_modules"):
        run_grid("zoo/gpt2-tiny", task, [0], [0], tmp_path / "r.db",
                 **{**LORA, "lora_target_modules": ["no_such_proj"]})
    with pytest.raises(ConfigError, match="lora_target_modules"):
        run_grid("zoo/gpt2-tiny", task, [0], [0], tmp_path / "r.db",
                 **{**LORA, "lora_target_modules": "c_attn"})
    assert not (tmp_path / "r.db").exists()


def test_text_dataset_with_encoder_decoder_model(zoo_models, tmp_path):
    task = TaskData.from_records([{"text": f"line {i}"} for i in range(20)], name="t", test_size=4)
    with pytest.raises(ConfigError, match="encoder-decoder"):
        run_grid("zoo/t5-small", task, [0], [0], tmp_path / "r.db", **QUICK)
    assert not (tmp_path / "r.db").exists()


def test_local_folder_models(zoo_models, tmp_path, task):
    with pytest.raises(ConfigError, match="no config.json"):
        finetune.resolve_model(str(tmp_path))
    path, config = finetune.resolve_model(str(zoo_models[0].path))
    assert config.model_type == "gpt2"
    row = FineTuner(str(zoo_models[0].path), **QUICK).run(task, 0)
    assert row["model"] == str(zoo_models[0].path) and row["test_loss"] > 0
