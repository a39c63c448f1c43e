"""The offline zoo: candidates, tokenizer and task built from the standard library.

The zoo is built once into the lensllm-nb cache (``LENSLLM_NB_CACHE`` or the user
cache dir) and reused by later sessions; see ``zoo_models``.
"""

import json

import pytest

from lensllm_nb.collection import zoo
from lensllm_nb.errors import ConfigError


def test_candidates_differ_in_architecture_size_and_knowledge(zoo_models):
    assert len(zoo_models) >= 6
    assert [m.name for m in zoo_models] == zoo.names()
    families = {m.family for m in zoo_models}
    assert {"gpt2", "llama", "gpt_neox", "t5"} <= families
    assert all(1e5 <= m.params <= 1e7 for m in zoo_models)
    assert len({m.params for m in zoo_models}) == len(zoo_models)
    assert len({m.pretrain_slice for m in zoo_models}) >= 3


def test_candidates_load_like_hub_models(zoo_models):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    for model in zoo_models:
        config = AutoConfig.from_pretrained(model.path)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        loaded = auto.from_pretrained(model.path)
        assert sum(p.numel() for p in loaded.parameters()) == model.params
        tokenizer = AutoTokenizer.from_pretrained(model.path)
        assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
        assert len(tokenizer) == config.vocab_size
        text = "def f(x):\n    return x"
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_build_is_cached(zoo_models):
    again = zoo.build(progress=False)
    assert [m.path for m in again] == [m.path for m in zoo_models]
    meta = json.loads((zoo_models[0].path / "zoo.json").read_text())
    assert meta["name"] == zoo_models[0].name


def test_resolve(zoo_models):
    assert zoo.resolve("zoo/gpt2-tiny") == zoo_models[0].path
    with pytest.raises(ConfigError, match="zoo/gpt2-tiny"):
        zoo.resolve("zoo/no-such-model")
    with pytest.raises(ConfigError, match="not a zoo candidate"):
        zoo.build(["bert-huge"])


def test_task_is_code_to_summary_from_the_stdlib(zoo_models):
    task = zoo.task_data()
    assert task.name == "zoo" and task.format_ == "pairs"
    assert len(task.test_) == 256 and len(task.validation_) == 64
    assert task.n_pool >= zoo.FULL_SIZE
    row = task.pool_[0]
    assert row["input"].startswith(("def ", "async def "))
    assert '"""' not in row["input"]
    assert 3 <= len(row["target"].split()) <= 24


def test_task_modules_are_not_in_pretraining_text(zoo_models):
    corpus = json.loads((zoo.zoo_dir() / "corpus.json").read_text())
    task_inputs = {row["input"] for row in corpus["task"]}
    assert not task_inputs & set(corpus["code"])
    summaries = {row["target"] for row in corpus["task"]}
    pretrain_summaries = {p.split(zoo.DEMO_SETTINGS["separator"], 1)[1] for p in corpus["pairs"]}
    # Identical one-line summaries ("Return self.") may recur across modules, but
    # the task must be mostly unseen.
    assert len(summaries & pretrain_summaries) < 0.1 * len(summaries)


def test_task_settings_are_checked():
    with pytest.raises(ConfigError, match="input"):
        zoo.task_data(text_column="x")


def test_cache_dir_and_spec_versioning(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))
    assert zoo.zoo_dir().parents[1] == tmp_path
    before = zoo.zoo_dir()
    assert before.parent == tmp_path / "zoo"
    changed = {**zoo.CANDIDATES, "gpt2-tiny": {**zoo.CANDIDATES["gpt2-tiny"], "steps": 1}}
    monkeypatch.setattr(zoo, "CANDIDATES", changed)
    assert zoo.zoo_dir() != before


def test_build_is_deterministic(zoo_models, tmp_path, monkeypatch):
    """A fresh build in another cache gives the same task and the same weights."""
    import torch
    from safetensors.torch import load_file

    cached_task = zoo.task_data().fingerprint_
    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))
    (fresh,) = zoo.build(["gpt2-tiny"], progress=False)
    assert fresh.path != zoo_models[0].path
    assert zoo.task_data().fingerprint_ == cached_task
    a = load_file(zoo_models[0].path / "model.safetensors")
    b = load_file(fresh.path / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert not list((tmp_path / "zoo").glob("*/models/.*.tmp"))
