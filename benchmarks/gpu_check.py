"""Device check of the GPU path: GPU tests, fine-tuning MFU, packed subset grid, NTK sketch.

One command on one GPU machine (an H200 of the device tool) runs every phase and
writes every figure as strict JSON to ``--out``. Each phase runs in its own
process, forked from one that imported the libraries once, and is killed at its
deadline: the sum of the caps of the phases so far (time a phase leaves unused
goes to the later ones), never past ``Profile.total_seconds`` (460 s on the
device, imports included: with the wheels' install and the interpreter's start it
stays inside the 8-minute budget). A phase that fails or times out is recorded
as such, its figures null, and the next phase runs:

``prepare``    build the offline zoo (CPU work), record the machine and library versions.
``tests``      ``pytest -m gpu tests/test_gpu.py`` (junit XML parsed into the JSON).
``finetune``   :class:`~lensllm_nb.collection.finetune.FineTuner` full fine-tuning of GPT-2 small
               (``GPT2Config()``, 124M, sequences of 1024 tokens, bf16): tokens/s and
               MFU, model FLOPs per token 6N + 12·L·d·T (PaLM, appendix B) over the
               measured 790 TFLOP/s bf16 matrix rate and the 989 TFLOP/s datasheet
               peak; LoRA tokens/s on the same model.
``packed``     a grid of 8 small zoo runs (4 candidates × n = 1,024 and 2,048; the zoo's
               pool of about 2,600 examples has no room for 4,096) one after another
               in one process, then several processes at once on the one GPU,
               each capped to its share of GPU memory; aggregate training tokens/s.
``ntk``        ``compute_ntk`` on GPT-2 small at n = 128 probe examples: seconds, the
               pairwise method timed on a few examples and extrapolated to n², and the
               error against the exact kernel at a size where it fits.
``reference``  the FineTuner recipe as a bare loop on synthetic tokens (eager): what
               FineTuner's own overhead costs.
``compiled``   the same loop under ``torch.compile`` with fused AdamW: what compilation
               would add (last, as its compile time is the least predictable).

Device command (one ``run`` call of the device tool, ``carry=[".whl"]``, ``timeout_s=560``),
after ``bash benchmarks/gpu_wheels.sh`` here::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT

It writes ``$OUT/gpu_check.json`` (figures), ``$OUT/gpu_tests.xml`` (junit) and
``$OUT/gpu_check.log`` (every phase's output) and prints a summary last; then
``give_back``. ``--phases ntk compiled`` reruns only some phases. If a forked
phase cannot use CUDA (the prepare phase probes it), the later phases start as
fresh interpreters instead (``--start-method spawn`` forces that from the start).

CPU self-test (tiny models, fp32, few steps; every code path, no device time)::

    .venv/bin/python benchmarks/gpu_check.py --self-test --out /tmp/gpu-self-test
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a source tree, as on the device machine
    sys.path.insert(0, str(ROOT))

from lensllm_nb.utils.safe_output import strict_json  # noqa: E402

MEASURED_PEAK = 790e12   # bf16 8192³ matrix product on an H200 here (device README: 769-798)
DATASHEET_PEAK = 989e12  # H200 SXM dense bf16, vendor datasheet
PHASES = ("prepare", "tests", "finetune", "packed", "ntk", "reference", "compiled")
_POLL = 0.01
_START_METHOD = "GPU_CHECK_START_METHOD"  # environment variable children read: fork or spawn


@dataclass(frozen=True)
class Profile:
    """Sizes and time caps of one mode of the check (see DEVICE and SELF_TEST)."""

    name: str
    device: str
    precision: str
    gpt2: dict               # GPT2Config overrides; {} is GPT-2 small (124M)
    seq_len: int
    batch_sizes: tuple       # FineTuner full fine-tuning; extra sizes only while time is left
    steps: tuple             # (short, long) max_steps: tokens/s from their difference
    grid_models: tuple
    grid_sizes: tuple
    grid_epochs: int
    grid_test_size: int      # test examples each grid run evaluates (the zoo task's default: 256)
    packed_workers: tuple    # processes at once; extra counts only while time is left
    ntk_n: int
    ntk_length: int
    ntk_sketch_dim: int
    ntk_exact_n: int
    ntk_pairwise_n: int
    compile_backend: str
    reference_steps: tuple   # (warm-up, timed)
    caps: dict               # phase -> seconds
    total_seconds: float


DEVICE = Profile(
    name="device", device="cuda", precision="bf16", gpt2={}, seq_len=1024,
    batch_sizes=(16, 32), steps=(5, 65),
    grid_models=("zoo/gpt2-tiny", "zoo/neox-small", "zoo/llama-small", "zoo/gpt2-wide"),
    grid_sizes=(1024, 2048), grid_epochs=1, grid_test_size=256, packed_workers=(4, 8),
    ntk_n=128, ntk_length=128, ntk_sketch_dim=4096, ntk_exact_n=32, ntk_pairwise_n=3,
    compile_backend="inductor", reference_steps=(5, 30),
    caps={"prepare": 75, "tests": 100, "finetune": 70, "packed": 85, "ntk": 40, "reference": 25,
          "compiled": 65},
    total_seconds=460,
)
SELF_TEST = Profile(
    name="self-test", device="cpu", precision="fp32",
    gpt2={"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64, "vocab_size": 2304}, seq_len=64,
    batch_sizes=(2, 4), steps=(1, 3),
    grid_models=("zoo/gpt2-tiny",), grid_sizes=(16, 32), grid_epochs=1, grid_test_size=16,
    packed_workers=(2,),
    ntk_n=6, ntk_length=16, ntk_sketch_dim=4096, ntk_exact_n=4, ntk_pairwise_n=2,
    compile_backend="eager", reference_steps=(1, 2),
    caps={name: 100 for name in PHASES}, total_seconds=400,
)


# ------------------------------------------------------------------ orchestration
def main(argv=None) -> int:
    started = time.monotonic()  # the imports below count towards the total too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for gpu_check.json, gpu_tests.xml and gpu_check.log")
    parser.add_argument("--self-test", action="store_true", help="tiny CPU run of every code path")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="run only these phases (default: all, in order)")
    parser.add_argument("--start-method", choices=("fork", "spawn"), default="fork",
                        help="how phases start: fork (default; falls back to spawn if CUDA fails "
                             "in a forked child) or spawn")
    args = parser.parse_args(argv)
    profile = SELF_TEST if args.self_test else DEVICE
    args.out.mkdir(parents=True, exist_ok=True)
    # Before torch is imported: availability checks through NVML leave CUDA
    # uninitialised, so forked children can still use it. The device reaches no hub.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    os.environ[_START_METHOD] = args.start_method
    if args.start_method == "fork":
        _preload()
    report = {
        "schema": 1, "mode": profile.name, "profile": asdict(profile),
        "command": [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "peaks_flops": {"measured": MEASURED_PEAK, "datasheet": DATASHEET_PEAK},
        "start_method": args.start_method, "phases": {},
    }
    log = args.out / "gpu_check.log"
    log.write_text("")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        scheduled = 0.0
        for name in (p for p in PHASES if p in args.phases):
            # Each phase may run until the sum of the caps so far: time an earlier
            # phase left unused goes to the later ones, never past the total.
            scheduled += profile.caps[name]
            seconds = min(scheduled, profile.total_seconds) - (time.monotonic() - started)
            report["phases"][name], report[name] = _run_phase(
                profile, name, seconds, args.out, Path(scratch), log)
            if _cuda_broken_by_fork(report, name):
                os.environ[_START_METHOD] = report["start_method"] = "spawn"
    report["summary"] = _summary(report)
    report["wall_seconds"] = time.monotonic() - started
    (args.out / "gpu_check.json").write_text(strict_json(report, indent=1))
    _print_summary(report)
    return 0


def _preload():
    """Import the heavy libraries once, so that forked phases and grid workers start at once.

    Nothing here may initialise CUDA, which a forked child could then not use:
    torch's NVML-based availability check (set before torch is imported) keeps
    library imports that ask whether a GPU exists from doing so.
    """
    import datasets  # noqa: F401
    import torch  # noqa: F401
    import transformers
    from transformers import GPT2LMHeadModel  # noqa: F401

    import lensllm_nb.collection.finetune  # noqa: F401
    import lensllm_nb.collection.ntk  # noqa: F401

    transformers.utils.logging.disable_progress_bar()  # weight loading/saving bars flood the log


def _cuda_broken_by_fork(report, name):
    """True when the prepare phase, forked, could not use the GPU: later phases then spawn."""
    probe = (report.get(name) or {}).get("cuda_probe") if name == "prepare" else None
    return os.environ[_START_METHOD] == "fork" and probe not in (None, "ok")


def _run_phase(profile, name, seconds, out, scratch, log):
    """Run one phase in a child process killed after `seconds`; return (status, result)."""
    if seconds < 5:
        return {"status": "skipped", "reason": "no time left in the total budget"}, None
    with log.open("a") as handle:
        handle.write(f"\n===== phase {name} (cap {seconds:.0f} s, {os.environ[_START_METHOD]}) =====\n")
    path = scratch / f"{name}.json"
    started = time.monotonic()
    child = _start(_phase_main, (profile, name, out, scratch, started + seconds, log))
    child.join(timeout=seconds)
    if child.is_alive():
        _kill(child)
        status = {"status": "timed_out", "reason": f"killed after its cap of {seconds:.0f} s"}
    elif child.exitcode != 0 or not path.is_file():
        status = {"status": "failed", "reason": f"exit status {child.exitcode}; see gpu_check.log"}
    else:
        status = {"status": "ok"}
    status.update(seconds=round(time.monotonic() - started, 2), cap_seconds=round(seconds, 1))
    print(f"phase {name:<9} {status['status']:<9} {status['seconds']:7.1f} s", flush=True)
    if status["status"] == "ok":
        return status, json.loads(path.read_text())
    partial = _partial_path(scratch, name)
    # What the phase had measured before it was killed or failed.
    return status, ({**json.loads(partial.read_text()), "partial": True} if partial.is_file() else None)


def _partial_path(scratch, name):
    return scratch / f"{name}.partial.json"


def _checkpoint(scratch, name, result):
    """Save a phase's figures so far: they are reported even if the phase is then killed."""
    partial = _partial_path(scratch, name)
    partial.with_suffix(".tmp").write_text(strict_json(result))
    partial.with_suffix(".tmp").replace(partial)


def _phase_main(profile, name, out, scratch, deadline, log):
    """Body of a phase's child: its own process group (so a kill takes its workers too)."""
    os.setsid()
    with log.open("a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
    sys.stdout.reconfigure(line_buffering=True)
    if os.environ[_START_METHOD] == "spawn":
        _preload()
    result = _PHASE_FUNCTIONS[name](profile, out, scratch, deadline)
    (scratch / f"{name}.json").write_text(strict_json(result, indent=1))


def _start(target, args):
    """Start `target(*args)` in a child process by the current start method (fork or spawn)."""
    import multiprocessing

    child = multiprocessing.get_context(os.environ[_START_METHOD]).Process(target=target, args=args)
    child.start()
    return child


def _kill(child):
    """Kill a phase's child and its process group (grid workers)."""
    import signal

    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # killed before it made its own group
        child.kill()
    child.join()


# ------------------------------------------------------------------ phase: prepare
def _prepare(profile, out, scratch, deadline):
    """Build the zoo (the tests and the packed grid need it) and record the machine."""
    import platform

    import torch

    from lensllm_nb.collection import zoo
    from lensllm_nb.utils.provenance import library_versions

    cuda = torch.cuda.is_available()
    probe = _cuda_probe() if cuda else None
    started = time.perf_counter()
    built = zoo.build(progress=False)
    return {
        "cuda_probe": probe,
        "zoo_build_seconds": time.perf_counter() - started,
        "zoo": {m.name: m.params for m in built},
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": {**library_versions(), **_versions("pyarrow", "fsspec", "huggingface_hub", "triton")},
    }


def _cuda_probe():
    """"ok" when this process can compute on the GPU, else the error (a fork after CUDA init fails)."""
    import torch

    try:
        return "ok" if torch.ones(2, device="cuda").sum().item() == 2 else "wrong sum"
    except Exception as exc:  # any failure here means: start later phases another way
        return f"{type(exc).__name__}: {exc}"[:300]


def _versions(*names):
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# ------------------------------------------------------------------ phase: tests
def _tests(profile, out, scratch, deadline):
    """``pytest -m gpu tests/test_gpu.py`` with junit XML, parsed per test."""
    import pytest

    xml = out / "gpu_tests.xml"
    os.chdir(ROOT)
    code = pytest.main(["-m", "gpu", "-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={xml}",
                        str(ROOT / "tests" / "test_gpu.py")])
    return {"exit_status": int(code), **parse_junit(xml)}


def parse_junit(path) -> dict:
    """Names of passed, failed and skipped tests (with the skip reason) in a junit XML file."""
    import xml.etree.ElementTree as ElementTree

    found = {"passed": [], "failed": [], "skipped": []}
    for case in ElementTree.parse(path).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if problem is not None:
            found["failed"].append({"test": name, "message": (problem.get("message") or "")[:500]})
        elif skip is not None:
            found["skipped"].append({"test": name, "reason": skip.get("message") or ""})
        else:
            found["passed"].append(name)
    found["counts"] = {key: len(value) for key, value in found.items()}
    return found


# ------------------------------------------------------------------ models and data
def gpt2_folder(folder, tokenizer_from, **overrides) -> Path:
    """Save a randomly initialised GPT-2 (``GPT2Config(**overrides)``) with a tokenizer to `folder`.

    A model built from a config needs no download; the tokenizer is copied from
    the model folder `tokenizer_from` (a zoo candidate), since FineTuner loads
    both with ``from_pretrained``. Token ids stay below the tokenizer's size, so
    a larger embedding table (GPT-2's 50,257 rows) is simply partly unused.
    """
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    ids = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = GPT2Config(**ids, **overrides)
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"`vocab_size`={config.vocab_size} is below the tokenizer's {len(tokenizer)} tokens")
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def _long_text_task(rows, seed=0):
    """A text task whose rows are long enough to fill any token budget up to 1024."""
    import numpy as np

    from lensllm_nb.collection.data import TaskData

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))

    def text():
        return " ".join("".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(1200))

    return TaskData.from_records([{"text": text()} for _ in range(rows)],
                                 [{"text": text()} for _ in range(4)], name="random-words", format="text")


def _tokens_per_second(make_tuner, task, steps, n_train):
    """Training tokens/s of FineTuner runs, from two run lengths (fixed costs cancel).

    The first run warms the GPU up (kernel selection, allocator); the two timed
    runs differ only in their number of optimizer steps, so model restore, test
    evaluation and set-up cancel in the difference.
    """
    make_tuner(max_steps=1).run(task, n_train)
    tuner = make_tuner(max_steps=steps[0])
    short = tuner.run(task, n_train)
    long = make_tuner(max_steps=steps[1]).run(task, n_train)
    for record in (short, long):
        if record["status"] != "ok" or not math.isfinite(record["test_loss"]):
            raise RuntimeError(f"fine-tuning run failed: {record.get('error')}")
    seconds = long["wall_seconds"] - short["wall_seconds"]
    tokens = long["tokens"] - short["tokens"]
    return {"tokens_per_s": tokens / seconds, "timed_steps": long["steps"] - short["steps"],
            "timed_tokens": tokens, "timed_seconds": seconds, "params": long["params"],
            "trainable_params": long["trainable_params"], "test_loss": long["test_loss"],
            "device": long["device"], "precision": long["precision"],
            "attention": getattr(tuner.model_.config, "_attn_implementation", None)}


# ------------------------------------------------------------------ phase: finetune
def _finetune(profile, out, scratch, deadline):
    """FineTuner tokens/s and MFU of full fine-tuning, then LoRA tokens/s."""
    from lensllm_nb.collection import zoo
    from lensllm_nb.collection.finetune import FineTuner

    folder = gpt2_folder(scratch / "gpt2", zoo.resolve("zoo/gpt2-tiny"), **profile.gpt2)
    config = json.loads((folder / "config.json").read_text())
    task = _long_text_task(rows=2 * max(profile.batch_sizes))
    result = {"model": {k: config[k] for k in ("n_layer", "n_embd", "n_head", "vocab_size")},
              "seq_len": profile.seq_len, "full": {}, "lora": None}

    def tuner(batch, lora=False):
        return lambda **more: FineTuner(
            str(folder), batch_size=batch, eval_batch_size=batch, lr=1e-4, scheduler="constant",
            max_input_length=profile.seq_len, precision=profile.precision, device=profile.device,
            lora=lora, progress=False, **more)

    for i, batch in enumerate(profile.batch_sizes):
        if i and time.monotonic() > deadline - 25:
            result["full"][str(batch)] = {"status": "skipped", "reason": "phase time cap"}
            continue
        figures = _attempt(_tokens_per_second, tuner(batch), task, profile.steps, 2 * batch)
        if "tokens_per_s" in figures:
            per_token = model_flops_per_token(figures["params"], config["n_layer"], config["n_embd"],
                                              profile.seq_len)
            flops = figures["tokens_per_s"] * per_token
            figures.update(model_flops_per_token=per_token, mfu_measured_peak=flops / MEASURED_PEAK,
                           mfu_datasheet_peak=flops / DATASHEET_PEAK)
        result["full"][str(batch)] = figures
        _checkpoint(scratch, "finetune", result)
    batch = profile.batch_sizes[0]
    result["lora"] = {"batch_size": batch, **_attempt(_tokens_per_second, tuner(batch, lora=True), task,
                                                      profile.steps, 2 * batch)}
    return result


def _attempt(measure, *args):
    """`measure(*args)`, or a record of its failure (one failed variant must not lose the others)."""
    try:
        return measure(*args)
    except Exception as exc:  # an out-of-memory batch size, say: recorded, the phase goes on
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}


def model_flops_per_token(params, layers, width, seq_len) -> float:
    """Training FLOPs per token, 6N + 12·L·d·T (PaLM, appendix B), for N `params`.

    6N counts the forward and backward matrix products of the weights; 12·L·d·T
    the attention scores and values, which 6N leaves out.
    """
    return 6.0 * params + 12.0 * layers * width * seq_len


# ------------------------------------------------------------------ phase: packed
def _packed(profile, out, scratch, deadline):
    """Aggregate throughput of a grid of small runs: one at a time vs several processes at once."""
    runs = [{"model": m, "n": n, "seed": 0} for m in profile.grid_models for n in profile.grid_sizes]
    memory = _free_gpu_memory()
    sequential = _grid_wall(profile, runs, 1, scratch, deadline)
    result = {"runs": runs, "free_gpu_memory_gib": memory and memory / 2**30,
              "sequential": sequential, "packed": {}}
    _checkpoint(scratch, "packed", result)
    for k in profile.packed_workers:
        if result["packed"] and time.monotonic() > deadline - 1.5 * sequential["wall_seconds"] / k - 15:
            result["packed"][str(k)] = {"status": "skipped", "reason": "phase time cap"}
            continue
        packed = _attempt(_grid_wall, profile, runs, k, scratch, deadline)
        if "tokens_per_s" in packed:
            packed["speedup"] = packed["tokens_per_s"] / sequential["tokens_per_s"]
            packed["max_abs_test_loss_change"] = max(
                abs(a["test_loss"] - b["test_loss"]) for a, b in zip(sequential["rows"], packed["rows"]))
        result["packed"][str(k)] = packed
        _checkpoint(scratch, "packed", result)
    measured = {k: v for k, v in result["packed"].items() if "speedup" in v}
    result["best_workers"] = max(measured, key=lambda k: measured[k]["speedup"]) if measured else None
    return result


def _free_gpu_memory():
    """Free GPU memory in bytes (nvidia-smi, so this process holds no CUDA context), or None."""
    try:
        line = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        return int(line) * 2**20
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        return None


def _grid_wall(profile, runs, workers, scratch, deadline):
    """Run `runs` split over `workers` processes started together; aggregate tokens/s.

    Every worker warms up and says it is ready; all start at one signal, so
    process start-up is left out of the wall time. Each worker may use
    0.9/workers of the GPU memory (torch's per-process memory fraction).
    """
    folder = Path(tempfile.mkdtemp(prefix=f"grid-{workers}-", dir=scratch))
    groups = _balanced(runs, workers)
    specs = [{"runs": group, "ready": folder / f"ready{i}", "go": folder / "go",
              "result": folder / f"result{i}.json", "memory_fraction": 0.9 / workers,
              "settings": _grid_settings(profile), "test_size": profile.grid_test_size,
              "deadline": deadline}
             for i, group in enumerate(groups)]
    children = [_start(_worker, (spec,)) for spec in specs]
    try:
        _wait_until_ready([s["ready"] for s in specs], children, deadline)
        (folder / "go").touch()
        for child in children:
            child.join(timeout=max(1.0, deadline - time.monotonic()))
            if child.exitcode != 0:
                raise RuntimeError(f"a grid worker failed (exit status {child.exitcode}); see gpu_check.log")
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
    parts = [json.loads(s["result"].read_text()) for s in specs]
    rows = sorted((row for part in parts for row in part["rows"]), key=lambda r: (r["model"], r["n"]))
    wall = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    tokens = sum(r["tokens"] for r in rows)
    return {"workers": len(groups), "wall_seconds": wall, "tokens": tokens, "tokens_per_s": tokens / wall,
            "runs_per_minute": 60 * len(rows) / wall, "memory_fraction": 0.9 / workers,
            "peak_gpu_memory_gib": [p["peak_gpu_memory_gib"] for p in parts], "rows": rows}


def _grid_settings(profile):
    from lensllm_nb.collection import zoo

    return {**zoo.DEMO_SETTINGS, "epochs": profile.grid_epochs, "device": profile.device,
            "precision": profile.precision, "progress": False}


def _balanced(runs, workers):
    """Split runs over workers, largest first onto the least loaded (LPT), by training examples."""
    groups = [[] for _ in range(min(workers, len(runs)))]
    for run in sorted(runs, key=lambda r: -r["n"]):
        min(groups, key=lambda g: sum(r["n"] for r in g)).append(run)
    return groups


def _model(run):
    return run["model"]


def _wait_until_ready(paths, children, deadline):
    while not all(p.exists() for p in paths):
        if any(child.exitcode is not None for child in children):
            raise RuntimeError("a grid worker exited before it was ready; see gpu_check.log")
        if time.monotonic() > deadline:
            raise TimeoutError("grid workers were not ready before the phase's cap")
        time.sleep(_POLL)


def _worker(spec):
    """One grid process: warm up, say ready, wait for the start signal, run its share."""
    import torch

    from lensllm_nb.collection import zoo
    from lensllm_nb.collection.finetune import FineTuner

    cuda = spec["settings"]["device"] == "cuda"
    if cuda:
        torch.cuda.set_per_process_memory_fraction(spec["memory_fraction"])
    task = zoo.task_data(test_size=spec["test_size"])
    FineTuner(spec["runs"][0]["model"], **{**spec["settings"], "max_steps": 2}).run(task, 16)
    spec["ready"].touch()
    while not spec["go"].exists():
        if time.monotonic() > spec["deadline"]:
            raise TimeoutError("no start signal before the phase's cap")
        time.sleep(_POLL)
    started, rows = time.time(), []
    # One tuner per model, as a grid job has: it loads and tokenizes once for all its sizes.
    for model, runs in itertools.groupby(sorted(spec["runs"], key=_model), key=_model):
        tuner = FineTuner(model, **spec["settings"])
        for run in runs:
            record = tuner.run(task, run["n"], run["seed"])
            rows.append({**run, **{k: record[k] for k in ("tokens", "steps", "test_loss", "wall_seconds")}})
    ended = time.time()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    spec["result"].write_text(strict_json(
        {"started": started, "ended": ended, "rows": rows, "peak_gpu_memory_gib": peak}))


# ------------------------------------------------------------------ phase: ntk
def _ntk(profile, out, scratch, deadline):
    """compute_ntk at n probe examples; pairwise timed on a few and extrapolated; error vs exact."""
    from lensllm_nb.collection.ntk import compute_ntk, pairwise_ntk

    model, batch = _ntk_model_and_probe(profile)
    head = lambda m: {k: v[:m] for k, v in batch.items()}  # noqa: E731
    k, n, m = profile.ntk_sketch_dim, profile.ntk_n, profile.ntk_pairwise_n
    compute_ntk(model, head(2), sketch_dim=k)  # warm-up
    sketch = _timed(lambda: compute_ntk(model, batch, sketch_dim=k))
    pairwise = _timed(lambda: pairwise_ntk(model, head(m)))
    per_pass = pairwise["seconds"] / m**2
    result = {
        "n": n, "probe_length": profile.ntk_length, "params": sketch["value"].n_params,
        "sketch": "countsketch", "sketch_dim": k, "device": profile.device,
        "sketch_seconds": sketch["seconds"], "spectrum": sketch["value"].spectrum_summary(),
        "pairwise": {"n_timed": m, "passes_timed": m**2, "seconds": pairwise["seconds"],
                     "seconds_per_pass": per_pass, "extrapolated_seconds_at_n": per_pass * n**2,
                     "note": f"pairwise_ntk timed on {m} examples ({m**2} passes) and extrapolated to n²"},
        "speedup_vs_pairwise_extrapolated": per_pass * n**2 / sketch["seconds"],
    }
    _checkpoint(scratch, "ntk", result)
    exact_n = _exact_size(profile, result["params"])
    exact = _timed(lambda: compute_ntk(model, head(exact_n), sketch="exact"))
    main = _sketch_figures(sketch, exact)
    variants = result["variants"] = {f"k={k},micro_batch=1": main}
    result["exact"] = {"n": exact_n, "seconds": exact["seconds"],
                       "rel_frobenius_error_of_sketch": main["rel_error_vs_exact"],
                       "expected_error_sqrt_n_over_k": (exact_n / k) ** 0.5}
    for dim, micro in ((k, 8), (4 * k, 1)):
        _checkpoint(scratch, "ntk", result)
        if time.monotonic() > deadline - 3 * sketch["seconds"] - 5:
            variants[f"k={dim},micro_batch={micro}"] = {"status": "skipped", "reason": "phase time cap"}
            continue
        variant = _timed(lambda: compute_ntk(model, batch, sketch_dim=dim, micro_batch=micro))
        variants[f"k={dim},micro_batch={micro}"] = _sketch_figures(variant, exact)
    return result


def _sketch_figures(timed, exact):
    """Seconds of a sketch at n, and its error against the exact kernel of the first examples.

    One seed gives every example the same sketch whatever n, so the leading
    block of the n-example sketch is the sketch of the exact kernel's examples.
    """
    import numpy as np

    reference = exact["value"].gram
    size = reference.shape[0]
    block = timed["value"].gram[:size, :size]
    return {"seconds": timed["seconds"],
            "rel_error_vs_exact": float(np.linalg.norm(block - reference) / np.linalg.norm(reference))}


def _ntk_model_and_probe(profile):
    """GPT-2 from its config (fp32, on the profile's device) and n random-token probe examples."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(bos_token_id=0, eos_token_id=0, **profile.gpt2)).to(profile.device)
    ids = torch.randint(0, model.config.vocab_size, (profile.ntk_n, profile.ntk_length),
                        generator=torch.Generator().manual_seed(0)).to(profile.device)
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def _exact_size(profile, params):
    """Probe examples whose exact gradients (n × P float32) fit in a third of free memory."""
    import torch

    if profile.device != "cuda":
        return profile.ntk_exact_n
    free, _ = torch.cuda.mem_get_info()
    return max(2, min(profile.ntk_exact_n, int(free / 3 / (4 * params))))


def _timed(call):
    started = time.perf_counter()
    value = call()
    return {"value": value, "seconds": time.perf_counter() - started}


# ------------------------------------------------------------------ phases: reference, compiled
def _reference(profile, out, scratch, deadline, compiled=False):
    """The FineTuner recipe as a bare loop on synthetic tokens (``compiled``: torch.compile, fused AdamW)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(bos_token_id=0, eos_token_id=0, **profile.gpt2)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(profile.device)
    figures = _loop_tokens_per_second(profile, model, compiled)
    params = sum(p.numel() for p in model.parameters())
    flops = figures["tokens_per_s"] * model_flops_per_token(params, config.n_layer, config.n_embd,
                                                            profile.seq_len)
    return {"batch_size": profile.batch_sizes[0], "seq_len": profile.seq_len, "params": params,
            "compile_backend": profile.compile_backend if compiled else None,
            "fused_adamw": compiled and profile.device == "cuda",
            "attention": getattr(config, "_attn_implementation", None), **figures,
            "mfu_measured_peak": flops / MEASURED_PEAK, "mfu_datasheet_peak": flops / DATASHEET_PEAK}


def _loop_tokens_per_second(profile, model, compiled):
    import torch
    import torch.nn.functional as functional

    device, batch = torch.device(profile.device), profile.batch_sizes[0]
    bf16 = profile.precision == "bf16"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=compiled and device.type == "cuda")
    forward = torch.compile(model, backend=profile.compile_backend) if compiled else model
    tokens = torch.randint(min(model.config.vocab_size, 2048), (batch, profile.seq_len),
                           generator=torch.Generator().manual_seed(0)).to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(input_ids=tokens, use_cache=False).logits
        summed = functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                          tokens[:, 1:].reshape(-1), reduction="sum")
        (summed / tokens[:, 1:].numel()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return summed

    model.train()
    warm, timed = profile.reference_steps
    for _ in range(warm):
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(timed):
        loss = step()
    _synchronize(device)
    seconds = time.perf_counter() - started
    return {"tokens_per_s": timed * batch * profile.seq_len / seconds, "timed_steps": timed,
            "step_ms": 1000 * seconds / timed, "loss": loss.item() / (batch * (profile.seq_len - 1))}


def _synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


_PHASE_FUNCTIONS = {"prepare": _prepare, "tests": _tests, "finetune": _finetune, "packed": _packed,
                    "ntk": _ntk, "reference": _reference,
                    "compiled": functools.partial(_reference, compiled=True)}


# ------------------------------------------------------------------ summary
def _summary(report) -> dict:
    """The headline figures, None where a phase did not deliver them."""
    def get(*keys):
        value = report
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    full = {b: f for b, f in (get("finetune", "full") or {}).items() if "tokens_per_s" in f}
    batch = max(full, key=lambda b: full[b]["tokens_per_s"]) if full else None  # the fastest batch size
    best = get("packed", "best_workers")
    return {
        "gpu": get("prepare", "gpu"),
        "gpu_tests": get("tests", "counts"),
        "finetune_batch_size": batch and int(batch),
        "finetune_tokens_per_s": get("finetune", "full", batch, "tokens_per_s"),
        "finetune_mfu_measured_peak": get("finetune", "full", batch, "mfu_measured_peak"),
        "finetune_mfu_datasheet_peak": get("finetune", "full", batch, "mfu_datasheet_peak"),
        "lora_tokens_per_s": get("finetune", "lora", "tokens_per_s"),
        "grid_sequential_tokens_per_s": get("packed", "sequential", "tokens_per_s"),
        "grid_packed_workers": best,
        "grid_packed_tokens_per_s": get("packed", "packed", best, "tokens_per_s") if best else None,
        "grid_packed_speedup": get("packed", "packed", best, "speedup") if best else None,
        "ntk_sketch_seconds": get("ntk", "sketch_seconds"),
        "ntk_speedup_vs_pairwise_extrapolated": get("ntk", "speedup_vs_pairwise_extrapolated"),
        "ntk_rel_error_vs_exact": get("ntk", "exact", "rel_frobenius_error_of_sketch"),
        "reference_loop_mfu_measured_peak": get("reference", "mfu_measured_peak"),
        "compiled_loop_mfu_measured_peak": get("compiled", "mfu_measured_peak"),
    }


def _print_summary(report):
    print(f"\ngpu_check ({report['mode']}), {report['wall_seconds']:.0f} s in all")
    for name, status in report["phases"].items():
        print(f"  {name:<10} {status['status']:<9} {status.get('reason', '')}")
    for key, value in report["summary"].items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"  {key:<40} {shown}")


if __name__ == "__main__":
    sys.exit(main())
