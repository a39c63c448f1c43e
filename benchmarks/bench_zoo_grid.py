"""Time the zoo grid the demo runs: every zoo candidate × zoo.DEMO_SIZES, one seed.

Goal (docs/BENCHMARKS.md, "Zoo grid"): the whole grid in at most 4 minutes on
2 CPU cores. The script also times the zoo build (``--fresh`` builds into a new
temporary cache so the build is timed cold), prints each candidate's curve,
log-log slopes and the phase-transition size D* of the rectified law fitted on
the selection sizes (issue 8 asks for D* inside them for most candidates), and with
``--compare-trainer`` times the hand-written training loop of
:class:`lensllm_nb.collection.finetune.FineTuner` against transformers ``Trainer`` on the
same run.

Usage::

    .venv/bin/python benchmarks/bench_zoo_grid.py [--fresh] [--compare-trainer]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GOAL_SECONDS = 240.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="build the zoo into a new temporary cache")
    parser.add_argument("--models", default=None, help="comma-separated zoo names (default: all)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default: zoo.DEMO_SIZES)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compare-trainer", action="store_true",
                        help="also time transformers Trainer against the hand loop")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DEMO_SETTINGS entry, e.g. --set lr=1e-3")
    args = parser.parse_args(argv)
    if not args.fresh:
        return _bench(args)
    with tempfile.TemporaryDirectory(prefix="lensllm-nb-bench-") as cache:
        os.environ["LENSLLM_NB_CACHE"] = cache
        return _bench(args)


def _bench(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from lensllm_nb.collection import finetune, zoo
    from lensllm_nb.collection.store import ResultsStore

    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()}")
    started = time.perf_counter()
    models = zoo.build(None if args.models is None else args.models.split(","), progress=False)
    build_seconds = time.perf_counter() - started
    print(f"zoo build: {build_seconds:.1f} s ({'cold' if args.fresh else 'cache as found'})")
    for model in models:
        print(f"  {model.name:18s} {model.params:>9,d} params  pretrain loss {model.pretrain_loss:.3f}")

    sizes = zoo.DEMO_SIZES if args.sizes is None else tuple(int(s) for s in args.sizes.split(","))
    settings = dict(zoo.DEMO_SETTINGS)
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = type(settings.get(key, 0.0))(value) if key in settings else float(value)
    print(f"sizes {sizes}, settings {settings}")

    task = zoo.task_data()
    curves, tables = {}, []
    grid_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ResultsStore(os.path.join(tmp, "bench.db")) as store:
        for model in models:
            t0 = time.perf_counter()
            table = finetune.run_grid(model.name, task, sizes, [0], store, progress=False, **settings)
            curves[model.name] = dict(zip(table["n_train"], table["test_loss"]))
            tables.append(table)
            print(f"  {model.name:18s} {time.perf_counter() - t0:6.1f} s")
    grid_seconds = time.perf_counter() - grid_started
    verdict = "meets" if grid_seconds <= GOAL_SECONDS else "MISSES"
    print(f"grid: {len(models)} models x {len(sizes)} sizes in {grid_seconds:.1f} s "
          f"({verdict} the {GOAL_SECONDS:.0f} s goal)")
    print(f"build + grid: {build_seconds + grid_seconds:.1f} s")

    print("\ntest loss by n_train")
    print(" " * 18 + "".join(f"{n:>8d}" for n in sizes))
    for name, curve in curves.items():
        print(f"{name:18s}" + "".join(f"{curve[n]:8.3f}" for n in sizes))
    print("\nlog-log slope d log(loss) / d log(n) between consecutive sizes > 0")
    positive = [n for n in sizes if n > 0]
    for name, curve in curves.items():
        slopes = [
            math.log(curve[b] / curve[a]) / math.log(b / a) for a, b in zip(positive, positive[1:])
        ]
        print(f"{name:18s}" + "".join(f"{s:8.3f}" for s in slopes))
    _print_d_star(tables)

    if args.compare_trainer:
        _compare_trainer(models[0].name, task, settings)


def _print_d_star(tables):
    """Print D* of the rectified law fitted on the selection sizes, and how many lie inside them."""
    import pandas as pd

    from lensllm_nb.analysis.curve_fits import fit_curves
    from lensllm_nb.collection import zoo

    fit = fit_curves(pd.concat(tables), "rectified", max_train=zoo.SELECTION_MAX_TRAIN)
    smallest = min(n for n in zoo.SELECTION_SIZES if n > 0)
    inside = 0
    print(f"\nD* of the rectified law fitted on sizes <= {zoo.SELECTION_MAX_TRAIN}")
    for row in fit.summary.itertuples():
        d_star = None if pd.isna(row.d_star) else float(row.d_star)
        inside += d_star is not None and smallest < d_star <= zoo.SELECTION_MAX_TRAIN
        shown = f"{d_star:8.1f}" if d_star is not None else f"    none ({row.reason or 'not identified'})"
        print(f"{row.model:18s}{shown}")
    print(f"D* inside ({smallest}, {zoo.SELECTION_MAX_TRAIN}]: {inside} of {len(fit.summary)}")


def _compare_trainer(model, task, settings, n=256):
    """Time training on n examples: FineTuner's loop vs transformers Trainer."""
    import torch
    from transformers import Trainer, TrainingArguments

    from lensllm_nb.collection.finetune import FineTuner, torch_threads

    tuner = FineTuner(model, progress=False, **settings)
    zero = tuner.run(task, 0)  # loads the model; evaluation only
    hand = tuner.run(task, n)
    hand_train = hand["wall_seconds"] - zero["wall_seconds"]

    tokenized = tuner._tokenized(task)
    features = tokenized.rows("pool", task.subset_indices(n, 0))
    tuner._restore()
    steps = math.ceil(n / settings["batch_size"]) * settings["epochs"]
    with tempfile.TemporaryDirectory() as tmp:
        arguments = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=settings["batch_size"],
            num_train_epochs=settings["epochs"], learning_rate=settings["lr"],
            warmup_steps=math.ceil(settings["warmup_ratio"] * steps), lr_scheduler_type="linear",
            weight_decay=0.0, max_grad_norm=1.0, save_strategy="no", logging_strategy="no",
            report_to=[], disable_tqdm=True, use_cpu=True, dataloader_pin_memory=False,
            remove_unused_columns=False, seed=0,
        )
        with torch_threads(settings.get("threads")):  # the same threads as the hand loop
            started = time.perf_counter()
            trainer = Trainer(model=tuner.model_, args=arguments, train_dataset=features,
                              data_collator=tuner._collate)
            trainer.train()
            trainer_train = time.perf_counter() - started
            threads = torch.get_num_threads()
    tuner._restore()
    print(f"\ntraining {model} on n={n} ({steps} steps, {threads} torch thread(s)):")
    print(f"  hand-written loop   {hand_train:6.2f} s")
    print(f"  transformers Trainer {trainer_train:6.2f} s  ({trainer_train / hand_train:.2f}x)")


if __name__ == "__main__":
    main()
