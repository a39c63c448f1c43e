"""Rebuild the zoo corpus: real fine-tuning curves with NTK features, made on this machine.

Every zoo corpus candidate (``zoo.corpus_names()``: the demo's six and
``zoo.CORPUS_CANDIDATES``) is fine-tuned by the project's own pipeline
(:func:`lensllm_nb.collection.finetune.run_grid`, LoRA) on every corpus task
(``zoo_tasks.TASKS``) at the nested sizes ``SIZES`` (16 … 1024, and 4096 as the
full run), seed 0, with the NTK features of the pretrained model on a 32-example
probe. Runs go to one SQLite store per task under the cache folder (a killed build
resumes); the curves (with each run's optimizer steps and learning rate) and the
features are then written as text files to ``lensllm_nb/data_files/``:

* ``zoo_corpus_curves.csv`` — one row per run;
* ``zoo_corpus_ntk.json`` — dataset -> model -> NTK Gram matrix, f0, target, meta;
* ``zoo_corpus_build.json`` — settings, library versions and the CPU time of the build.

Deterministic: one torch thread per process, fixed seeds; ``--jobs`` runs
(task, candidate) grids side by side in processes without changing any number.

Usage: ``python benchmarks/build_zoo_corpus.py [--jobs 2] [--out lensllm_nb/data_files]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SIZES = (0, 16, 32, 64, 128, 256, 512, 1024, 4096)
# The demo's LoRA settings, with fewer epochs so that the build fits the CPU and
# wall time of a shared 2-core machine; the separator is each task's own.
SETTINGS = {
    "lr": 1e-2, "batch_size": 8, "lora": True, "lora_r": 8, "lora_alpha": 16,
    "warmup_ratio": 0.1, "max_input_length": 40, "max_target_length": 20, "threads": 1,
    "ntk_probe": 32, "progress": False,
}
# Epochs per task: zoo-name 2; the other two 1, decided while the build ran
# (at 2 epochs it would have ended after the session's deadline on the shared
# machine). Each run records its steps, so both schedules are in the data.
EPOCHS = {"zoo-name": 2, "zoo-args": 1, "zoo-next-line": 1}
_CSV_COLUMNS = ["model", "dataset", "n_train", "seed", "test_loss", "train_loss", "steps", "lr",
                "epochs", "batch_size", "tokens", "flops", "params", "trainable_params", "family"]


def _store_path(task):
    from lensllm_nb.utils.provenance import cache_dir

    return cache_dir() / "zoo_corpus" / f"{task}.db"


def _grid(job):
    """Fine-tune one candidate on one task into that task's store; return its CPU seconds."""
    from lensllm_nb.collection import finetune, zoo_tasks

    task, model = job
    started = time.process_time()
    path = _store_path(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    finetune.run_grid(model, zoo_tasks.task_data(task), list(SIZES), seeds=(0,), store=str(path),
                      on_error="raise", separator=zoo_tasks.SEPARATORS[task], epochs=EPOCHS[task], **SETTINGS)
    return task, model, time.process_time() - started


def _export(out, tasks):
    """Write the curves CSV and the NTK JSON from the stores."""
    import pandas as pd

    from lensllm_nb.collection.store import ResultsStore

    frames, features = [], {}
    for task in tasks:
        with ResultsStore(str(_store_path(task)), readonly=True) as store:
            runs = store.runs(status="ok")
        runs = runs.assign(lr=[c["lr"] for c in runs["config"]], epochs=[c["epochs"] for c in runs["config"]],
                           batch_size=[c["batch_size"] for c in runs["config"]],
                           trainable_params=[(e or {}).get("trainable_params") for e in runs["extra"]])
        frames.append(runs[_CSV_COLUMNS])
        features[task] = {m: _compact(ntk) for m, ntk in zip(runs["model"], runs["ntk"]) if ntk}
    table = pd.concat(frames).sort_values(["dataset", "model", "n_train", "seed"])
    table.to_csv(out / "zoo_corpus_curves.csv", index=False, float_format="%.10g")
    (out / "zoo_corpus_ntk.json").write_text(json.dumps(features, sort_keys=True), encoding="utf-8")
    return table


def _compact(ntk):
    """What rebuilds the features (``NTKFeatures.from_gram``): Θ, f0, target and meta, 10 digits."""
    keep = {k: ntk[k] for k in ("sketch_dim", "sketch", "n_params", "seed")}
    for name in ("gram", "f0", "target"):
        keep[name] = _rounded(ntk[name])
    return keep


def _rounded(value):
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return float(f"{value:.10g}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="grids run side by side (processes)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "lensllm_nb" / "data_files"))
    parser.add_argument("--tasks", nargs="*", default=None, help="subset of the corpus tasks")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    from lensllm_nb.collection import zoo, zoo_tasks
    from lensllm_nb.utils.provenance import library_versions

    wall, cpu = time.time(), time.process_time()
    tasks = list(args.tasks or zoo_tasks.TASKS)
    zoo.build(zoo.corpus_names(), progress=False)
    jobs = [(task, model) for task in tasks for model in zoo.corpus_names()]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for task, model, seconds in pool.map(_grid, jobs):
            print(f"{task} {model}: {seconds:.1f} s CPU", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = _export(out, tasks)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {
        "command": " ".join(["python", "benchmarks/build_zoo_corpus.py", *argv]),
        "sizes": list(SIZES), "settings": SETTINGS, "epochs": EPOCHS, "tasks": tasks, "models": zoo.corpus_names(),
        "runs": int(len(table)),
        "cpu_seconds": round(time.process_time() - cpu + children.ru_utime + children.ru_stime, 1),
        "wall_seconds": round(time.time() - wall, 1),
        "versions": library_versions(),
    }
    (out / "zoo_corpus_build.json").write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    print(json.dumps({k: record[k] for k in ("runs", "cpu_seconds", "wall_seconds")}))


if __name__ == "__main__":
    main()
