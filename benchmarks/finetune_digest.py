"""Print the records of a few fine-tuning runs that exercise every path of the loop.

A check, not a timing: run it before and after a change to the training loop,
the loss, tokenizing or the settings, and compare the lines (``diff``). The runs
cover full fine-tuning with NTK features (gpt2-tiny, sizes 0/16/64), an
encoder-decoder with gradient accumulation and early stopping (t5-small), and
LoRA with max steps (llama-small), seeds 0 and 1. Each line: model, n_train,
seed, test_loss, train_loss, steps, tokens, val_loss, best_step, config_hash and
the NTK trace. Uses the zoo in the current cache (built if missing).

Usage::

    .venv/bin/python benchmarks/finetune_digest.py
"""

from __future__ import annotations

import sys

from lensllm_nb.collection import finetune, zoo


def main():
    task = zoo.task_data()
    cases = [
        # Every weight trained for the first two (the demo itself fine-tunes LoRA adapters).
        ("zoo/gpt2-tiny", dict(zoo.DEMO_SETTINGS, lora=False, progress=False, ntk_probe=4, ntk_sketch_dim=64),
         [0, 16, 64]),
        ("zoo/t5-small", dict(zoo.DEMO_SETTINGS, lora=False, progress=False, grad_accum=2, batch_size=8,
                              epochs=2, early_stopping_patience=1, eval_steps=2), [32]),
        ("zoo/llama-small", dict(zoo.DEMO_SETTINGS, progress=False, lora=True, max_steps=5), [16]),
    ]
    for model, settings, sizes in cases:
        table = finetune.FineTuner(model, **settings).grid(task, sizes, [0, 1])
        for row in table.to_dict("records"):
            ntk = row.get("ntk")
            print(model, row["n_train"], row["seed"], repr(row["test_loss"]), repr(row["train_loss"]),
                  row["steps"], row["tokens"], row.get("val_loss"), row.get("best_step"), row["config_hash"],
                  None if not ntk else repr(ntk["spectrum"]["trace"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
