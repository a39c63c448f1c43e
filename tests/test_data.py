"""Task data: formats, fixed test split, nested subsets, tokenization and collation."""

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensllm_nb.collection.data import TaskData
from lensllm_nb.collection.resolve import load_task
from lensllm_nb.collection.tokenizing import Collator, tokenize
from lensllm_nb.errors import ConfigError
from lensllm_nb.utils.validation import check_subset_sizes as check_sizes


def _pairs(n, prefix="x"):
    return [{"input": f"{prefix} input number {i}", "target": f"target {i}"} for i in range(n)]


@pytest.fixture(scope="module")
def task():
    return TaskData.from_records(_pairs(200), name="mem", test_size=20, val_size=10)


@pytest.fixture(scope="module")
def tokenizer():
    """A small byte-level BPE tokenizer trained here, so no hub access is needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    raw.train_from_iterator([r["input"] + " " + r["target"] for r in _pairs(200)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>")


# --------------------------------------------------------------------- splits
def test_pairs_format_and_split_sizes(task):
    assert task.format_ == "pairs"
    assert len(task.test_) == 20 and len(task.validation_) == 10
    assert task.n_pool == 170
    assert task.columns == ("input", "target")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 85), seed=st.integers(0, 10_000))
def test_subsets_are_nested(task, n, seed):
    small = task.subset_indices(n, seed)
    large = task.subset_indices(2 * n, seed)
    assert len(small) == n and len(set(small)) == n
    np.testing.assert_array_equal(small, large[:n])
    assert set(task.subset(n, seed)["input"][:]) <= set(task.subset(2 * n, seed)["input"][:])


def test_subsets_differ_between_seeds(task):
    assert not np.array_equal(task.subset_indices(50, 0), task.subset_indices(50, 1))


def test_test_split_never_overlaps_training(task):
    test = set(zip(task.test_["input"][:], task.test_["target"][:]))
    val = set(zip(task.validation_["input"][:], task.validation_["target"][:]))
    pool = set(zip(task.pool_["input"][:], task.pool_["target"][:]))
    assert not test & pool and not val & pool and not test & val
    full = task.subset(task.n_pool, seed=3)
    assert not test & set(zip(full["input"][:], full["target"][:]))


def test_test_split_is_fixed():
    a = TaskData.from_records(_pairs(100), name="m", test_size=10)
    b = TaskData.from_records(_pairs(100), name="m", test_size=10)
    assert a.test_["input"][:] == b.test_["input"][:]
    assert a.fingerprint_ == b.fingerprint_
    c = TaskData.from_records(_pairs(100), name="m", test_size=10, split_seed=1)
    assert c.test_["input"][:] != a.test_["input"][:]
    assert c.fingerprint_ != a.fingerprint_


def test_duplicates_of_test_rows_are_dropped_from_training():
    rows = _pairs(50) + _pairs(50)  # every row twice
    task = TaskData.from_records(rows, name="dup", test_size=10)
    assert task.n_overlap_dropped_ >= 10
    test = set(task.test_["input"][:])
    assert not test & set(task.pool_["input"][:])


def test_separate_test_split_is_used_whole():
    task = TaskData.from_records(_pairs(30), _pairs(7, prefix="t"), name="m")
    assert len(task.test_) == 7 and task.n_pool == 30


def test_text_format_is_detected():
    task = TaskData.from_records([{"text": f"line {i}"} for i in range(30)], name="t", test_size=5)
    assert task.format_ == "text" and task.columns == ("text",)


def test_fraction_test_size():
    task = TaskData.from_records(_pairs(100), name="m", test_size=0.25)
    assert len(task.test_) == 25 and task.n_pool == 75


# --------------------------------------------------------------------- inputs
def test_inputs_are_not_modified():
    rows = _pairs(40)
    frame = pd.DataFrame(rows)
    rows_before, frame_before = copy.deepcopy(rows), frame.copy()
    TaskData.from_records(rows, name="m", test_size=5)
    TaskData.from_records(frame, name="m", test_size=5)
    assert rows == rows_before
    pd.testing.assert_frame_equal(frame, frame_before)


def test_files_and_directories(tmp_path):
    train = pd.DataFrame(_pairs(40))
    test = pd.DataFrame(_pairs(6, prefix="t"))
    train.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    test.to_csv(tmp_path / "test.csv", index=False)
    train.to_parquet(tmp_path / "data.parquet", index=False)

    from_dir = load_task(tmp_path)
    assert from_dir.name == str(tmp_path)
    assert from_dir.n_pool == 40 and len(from_dir.test_) == 6
    from_file = load_task(str(tmp_path / "data.parquet"), test_size=8)
    assert from_file.n_pool == 32 and from_file.format_ == "pairs"


@pytest.mark.parametrize("rows, message", [
    ([{"question": "q", "answer": "a"}] * 20, "question"),
    ([{"input": "q", "answer": "a"}] * 20, "answer"),
])
def test_missing_columns_name_what_exists(rows, message):
    with pytest.raises(ConfigError, match=message):
        TaskData.from_records(rows, name="bad", test_size=2)


def test_explicit_format_needs_its_columns():
    with pytest.raises(ConfigError, match="'text'"):
        TaskData.from_records(_pairs(20), name="m", format="text", test_size=2)
    task = TaskData.from_records([{"body": f"b{i}"} for i in range(20)], name="m",
                                 text_column="body", test_size=2)
    assert task.columns == ("body",)


def test_non_string_values_are_refused():
    rows = _pairs(20) + [{"input": None, "target": "t"}]
    with pytest.raises(ConfigError, match="row 20"):
        TaskData.from_records(rows, name="m", test_size=2)


@pytest.mark.parametrize("sizes, message", [
    ([0, 16, 500], "only 170"),
    ([0, -1], "non-negative"),
    ([0, 1.5], "whole numbers"),
    ([16.0], "whole numbers"),
    (["16"], "whole numbers"),
    ([True], "whole numbers"),
    ([], "empty"),
    ("0,16", "list of integers"),
])
def test_bad_sizes(task, sizes, message):
    with pytest.raises(ConfigError, match=message):
        task.check_sizes(sizes)


def test_check_sizes_sorts_and_deduplicates():
    assert check_sizes([64, 0, 16, 16, np.int64(32)]) == (0, 16, 32, 64)


@pytest.mark.parametrize("kwargs, message", [
    ({"test_size": 0}, "positive"),
    ({"test_size": 1.5}, r"\(0, 1\)"),
    ({"test_size": 200}, "leaves none"),
    ({"format": "chat"}, "format"),
    ({"split_seed": -1}, "split_seed"),
    ({"split_seed": "0"}, "split_seed"),
])
def test_bad_split_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TaskData.from_records(_pairs(50), name="m", **kwargs)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_task(str(tmp_path / "nope.jsonl"))
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(ConfigError, match="suffix"):
        load_task(str(tmp_path / "data.txt"))


def test_unknown_hub_dataset_is_one_clear_error():
    with pytest.raises(ConfigError, match="could not be loaded from the Hugging Face Hub"):
        load_task("no-such-user/no-such-dataset-xyz")


# --------------------------------------------------------------- tokenization
def test_causal_pairs_mask_the_prompt(tokenizer):
    rows = [{"input": "x input number 3", "target": "target 3"}]
    (feature,) = tokenize(rows, tokenizer, format="pairs", separator=" => ")
    target = tokenizer("target 3", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert feature["input_ids"][-len(target):] == target
    assert feature["labels"][-len(target):] == target
    assert all(t == -100 for t in feature["labels"][: -len(target)])
    assert len(feature["labels"]) == len(feature["input_ids"])


def test_truncation_keeps_the_separator_and_budgets(tokenizer):
    rows = [{"input": "x input number 1 " * 40, "target": "target 1 " * 40}]
    (feature,) = tokenize(rows, tokenizer, format="pairs", separator=" => ",
                          max_input_length=16, max_target_length=8)
    sep = tokenizer(" => ", add_special_tokens=False)["input_ids"]
    prompt = [t for t, label in zip(feature["input_ids"], feature["labels"]) if label == -100]
    assert len(prompt) == 16 and prompt[-len(sep):] == sep
    target = [label for label in feature["labels"] if label != -100]
    assert len(target) == 8 and target[-1] == tokenizer.eos_token_id


def test_encoder_decoder_pairs(tokenizer):
    rows = _pairs(3)
    features = tokenize(rows, tokenizer, format="pairs", encoder_decoder=True)
    for row, feature in zip(rows, features):
        assert feature["input_ids"] == tokenizer(row["input"])["input_ids"]
        assert feature["labels"][-1] == tokenizer.eos_token_id
        assert -100 not in feature["labels"]


def test_text_format_learns_every_token(tokenizer):
    (feature,) = tokenize([{"text": "target 12 target 13"}], tokenizer, format="text")
    assert feature["labels"] == feature["input_ids"]
    with pytest.raises(ConfigError, match="encoder-decoder"):
        tokenize([{"text": "a"}], tokenizer, format="text", encoder_decoder=True)


def test_collator_pads_and_masks(tokenizer):
    features = tokenize(_pairs(4), tokenizer, format="pairs")
    features[0] = {"input_ids": features[0]["input_ids"][:5], "labels": features[0]["labels"][:5]}
    batch = Collator(tokenizer.pad_token_id)(features)
    width = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == (4, width)
    assert batch["attention_mask"][0].sum() == 5
    assert (batch["labels"][0, 5:] == -100).all()
    assert (batch["input_ids"][0, 5:] == tokenizer.pad_token_id).all()
    assert "decoder_input_ids" not in batch


def test_collator_builds_decoder_inputs(tokenizer):
    features = tokenize(_pairs(2), tokenizer, format="pairs", encoder_decoder=True)
    batch = Collator(tokenizer.pad_token_id, decoder_start_token_id=0)(features)
    labels, decoder = batch["labels"], batch["decoder_input_ids"]
    assert (decoder[:, 0] == 0).all()
    for row in range(2):
        real = labels[row] != -100
        n = int(real.sum())
        assert decoder[row, 1:n].tolist() == labels[row, : n - 1].tolist()


def test_task_tokenize_covers_every_split(task, tokenizer):
    tokenized = task.tokenize(tokenizer)
    assert len(tokenized.pool) == task.n_pool
    assert len(tokenized.test) == 20 and len(tokenized.validation) == 10


# ------------------------------------------------------- Dataset.map tokenizing
def test_dataset_tokenizing_matches_row_tokenizing(task, tokenizer):
    tokenized = task.tokenize(tokenizer, max_input_length=16, max_target_length=8, separator=" => ")
    rows = tokenize(task.pool_.to_list(), tokenizer, format="pairs", max_input_length=16,
                    max_target_length=8, separator=" => ")
    assert tokenized.rows("pool") == rows
    assert len(tokenized.test) == len(task.test_) and len(tokenized.validation) == len(task.validation_)
    picked = [5, 0, 3]
    assert tokenized.rows("pool", picked) == [rows[i] for i in picked]
    assert tokenized.longest() == max(max(len(r["input_ids"]), len(r["labels"]))
                                      for split in ("pool", "test", "validation")
                                      for r in tokenized.rows(split))


def test_file_task_tokenizing_is_cached_on_disk(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    pd.DataFrame(_pairs(60)).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    task = load_task(str(tmp_path / "train.jsonl"), test_size=10)
    first = task.tokenize(tokenizer, max_input_length=16, max_target_length=8)
    again = task.tokenize(tokenizer, max_input_length=16, max_target_length=8)
    files = [f["filename"] for f in first.pool.cache_files]
    assert files and files == [f["filename"] for f in again.pool.cache_files]
    other = task.tokenize(tokenizer, max_input_length=20, max_target_length=8)
    assert [f["filename"] for f in other.pool.cache_files] != files

