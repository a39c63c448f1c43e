"""Prepare a 100,000-example local task: load, split and tokenize; seconds and peak memory.

Goal (issue 11, docs/BENCHMARKS.md "Task preparation"): a dataset of 100,000+
examples prepares in seconds with flat memory. The script writes a synthetic
input/target jsonl file (random words, seeded), trains a small byte-level BPE on
a sample of it, then, in a fresh process per mode, times
``lensllm_nb.collection.resolve.load_task`` and ``TaskData.tokenize`` and reads the process's
peak resident memory:

* ``map``: the package's path, ``datasets.Dataset.map(batched=True)`` into Arrow
  (a second ``tokenize`` of the same task reads the map cache);
* ``lists``: the previous path, every split tokenized at once into Python lists
  of dicts (``tokenize`` on a list of rows), for comparison.

Usage::

    .venv/bin/python benchmarks/bench_tokenize.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_data(folder, rows, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    words = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9)))
                      for _ in range(5000)])
    path = folder / "train.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            text = " ".join(words[rng.integers(0, len(words), size=rng.integers(10, 60))])
            target = " ".join(words[rng.integers(0, len(words), size=rng.integers(3, 12))])
            handle.write(json.dumps({"input": text, "target": target}) + "\n")
    return path


def _train_tokenizer(path, folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    sample = [json.loads(line)["input"] for _, line in zip(range(5000), path.open(encoding="utf-8"))]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(sample, trainer=trainers.BpeTrainer(
        vocab_size=2048, special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>")
    tokenizer.save_pretrained(folder / "tokenizer")


def _measure(mode, path, tokenizer_dir):
    """One mode in this process: prints a JSON line of seconds and peak memory."""
    from transformers import AutoTokenizer

    from lensllm_nb.collection.resolve import load_task
    from lensllm_nb.collection.tokenizing import TokenizedTask, tokenize

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    options = {"max_input_length": 128, "max_target_length": 32, "separator": "\n"}
    base = _peak_mib()
    started = time.perf_counter()
    task = load_task(str(path), test_size=1000)
    loaded = time.perf_counter()
    if mode == "map":
        tokenized = task.tokenize(tokenizer, **options)
    else:
        splits = [task.pool_, task.test_]
        pool, test = (tokenize(ds.to_list(), tokenizer, format="pairs", **options) for ds in splits)
        tokenized = TokenizedTask(pool=pool, test=test, validation=None)
    done = time.perf_counter()
    out = {"mode": mode, "rows": task.n_pool + len(task.test_), "load_s": round(loaded - started, 2),
           "tokenize_s": round(done - loaded, 2), "peak_rss_mib": round(_peak_mib()),
           "peak_rss_above_imports_mib": round(_peak_mib() - base), "pool": len(tokenized.pool)}
    if mode == "map":
        again = time.perf_counter()
        task.tokenize(tokenizer, **options)
        out["tokenize_again_s"] = round(time.perf_counter() - again, 2)
    print(json.dumps(out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--measure", choices=("map", "lists"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        return _measure(args.measure, Path(args.path), args.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        path = _write_data(folder, args.rows)
        _train_tokenizer(path, folder)
        print(f"wrote {args.rows} rows ({path.stat().st_size / 2**20:.1f} MiB) and a tokenizer "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        # A private datasets cache, so the first map really tokenizes.
        env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "hf-cache")}
        for mode in ("map", "lists"):
            subprocess.run([sys.executable, __file__, "--measure", mode, "--path", str(path),
                            "--tokenizer", str(folder / "tokenizer")], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
