"""benchmarks/gpu_check.py in its CPU self-test mode: every phase runs and the JSON is strict.

The device check must not spend GPU time on a bug, so its reduced mode (tiny
models, fp32, a few steps, on CPU) runs every code path here.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _no_constants(name):
    raise AssertionError(f"gpu_check.json holds {name}, which strict JSON forbids")


@pytest.fixture(scope="module")
def report(zoo_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run([sys.executable, str(SCRIPT), "--self-test", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (out / "gpu_check.json").read_text()
    return json.loads(text, parse_constant=_no_constants), out


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_every_phase_runs_and_writes_its_files(report):
    data, out = report
    assert data["mode"] == "self-test" and data["profile"]["device"] == "cpu"
    assert {name: s["status"] for name, s in data["phases"].items()} == {
        name: "ok" for name in ("prepare", "tests", "finetune", "packed", "ntk", "reference", "compiled")}
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_tests.xml"]
    assert "phase ntk" in (out / "gpu_check.log").read_text()


@pytest.mark.slow
def test_gpu_tests_are_collected_and_skipped_without_cuda(report):
    data, _ = report
    tests = data["tests"]
    assert tests["counts"]["failed"] == 0 and tests["counts"]["passed"] == 0
    assert tests["counts"]["skipped"] >= 4
    assert all("no CUDA GPU" in case["reason"] for case in tests["skipped"])
    assert any("ntk_sketch_on_the_device" in case["test"] for case in tests["skipped"])


@pytest.mark.slow
def test_figures_are_consistent(report):
    data, _ = report
    full = data["finetune"]["full"]
    for figures in full.values():
        assert _positive(figures["tokens_per_s"]) and figures["precision"] == "fp32"
        # MFU is throughput × FLOPs per token over the peak, for both peaks.
        flops = figures["tokens_per_s"] * figures["model_flops_per_token"]
        assert figures["mfu_measured_peak"] == pytest.approx(flops / data["peaks_flops"]["measured"])
        assert figures["mfu_datasheet_peak"] < figures["mfu_measured_peak"]
    lora = data["finetune"]["lora"]
    assert _positive(lora["tokens_per_s"]) and lora["trainable_params"] < lora["params"]

    packed = data["packed"]
    assert packed["sequential"]["workers"] == 1 and packed["best_workers"] == "2"
    two = packed["packed"]["2"]
    assert two["workers"] == 2 and two["tokens"] == packed["sequential"]["tokens"]
    # The same runs give the same losses whether packed or not (CPU: bit for bit).
    assert two["max_abs_test_loss_change"] <= 1e-6
    assert _positive(two["speedup"])

    ntk = data["ntk"]
    assert ntk["pairwise"]["extrapolated_seconds_at_n"] == pytest.approx(
        ntk["pairwise"]["seconds_per_pass"] * ntk["n"] ** 2)
    assert 0 < ntk["exact"]["rel_frobenius_error_of_sketch"] < 0.2
    assert set(ntk["variants"]) == {"k=4096,micro_batch=1", "k=4096,micro_batch=8", "k=16384,micro_batch=1"}
    assert data["reference"]["compile_backend"] is None and data["compiled"]["compile_backend"] == "eager"

    summary = data["summary"]
    assert summary["gpu"] is None and summary["grid_packed_workers"] == "2"
    figures = {k: v for k, v in summary.items() if k not in ("gpu", "gpu_tests", "grid_packed_workers")}
    assert all(_positive(v) for v in figures.values()), figures


@pytest.mark.slow
def test_spawned_phases_run_too(tmp_path):
    """The fallback when a forked child cannot use CUDA: phases start as fresh interpreters."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--self-test", "--start-method", "spawn",
                           "--phases", "ntk", "--out", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "gpu_check.json").read_text(), parse_constant=_no_constants)
    assert data["start_method"] == "spawn" and list(data["phases"]) == ["ntk"]
    assert data["phases"]["ntk"]["status"] == "ok" and data["ntk"]["n"] == 6
    assert "finetune" not in data and data["summary"]["finetune_tokens_per_s"] is None


def test_a_failed_cuda_probe_switches_to_spawn(monkeypatch):
    from test_gpu import load_gpu_check

    gpu_check = load_gpu_check()
    monkeypatch.setenv("GPU_CHECK_START_METHOD", "fork")
    broken = {"prepare": {"cuda_probe": "RuntimeError: CUDA error: initialization error"}}
    assert gpu_check._cuda_broken_by_fork(broken, "prepare")
    assert not gpu_check._cuda_broken_by_fork({"prepare": {"cuda_probe": "ok"}}, "prepare")
    assert not gpu_check._cuda_broken_by_fork({"prepare": {"cuda_probe": None}}, "prepare")  # no GPU
    assert not gpu_check._cuda_broken_by_fork({"prepare": None}, "prepare")  # phase timed out
    monkeypatch.setenv("GPU_CHECK_START_METHOD", "spawn")
    assert not gpu_check._cuda_broken_by_fork(broken, "prepare")


def _sleep_with_a_child(profile, out, scratch, deadline):
    """A phase that outlives its cap and has a child process of its own (like grid workers)."""
    import time

    from test_gpu import load_gpu_check

    load_gpu_check()._checkpoint(scratch, "ntk", {"figure": 1.5})
    child = subprocess.Popen(["sleep", "120"])
    (scratch / "grandchild.pid").write_text(str(child.pid))
    time.sleep(120)


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status waits to be collected


def test_a_phase_past_its_cap_is_killed_with_its_children_and_keeps_its_figures(tmp_path, monkeypatch):
    from test_gpu import load_gpu_check

    gpu_check = load_gpu_check()
    monkeypatch.setenv("GPU_CHECK_START_METHOD", "fork")
    monkeypatch.setitem(gpu_check._PHASE_FUNCTIONS, "ntk", _sleep_with_a_child)
    log = tmp_path / "gpu_check.log"
    status, result = gpu_check._run_phase(gpu_check.SELF_TEST, "ntk", 6, tmp_path, tmp_path, log)
    assert status["status"] == "timed_out" and "killed after its cap of 6 s" in status["reason"]
    assert result == {"figure": 1.5, "partial": True}  # what it had measured is kept
    assert not _alive(int((tmp_path / "grandchild.pid").read_text()))
    assert "===== phase ntk (cap 6 s, fork)" in log.read_text()


def test_the_device_profile_fits_the_data(zoo_models):
    """What only the device run would find out otherwise: sizes above the pool, short sequences."""
    from test_gpu import load_gpu_check
    from transformers import AutoTokenizer

    from lensllm_nb.collection import zoo

    device = load_gpu_check().DEVICE
    # 8 minutes on the device, less 20 s for installing the wheels and starting Python.
    assert sum(device.caps.values()) <= device.total_seconds <= 8 * 60 - 20
    task = zoo.task_data(test_size=device.grid_test_size)
    task.check_sizes(device.grid_sizes)  # raises when a size exceeds the training pool
    long_text = load_gpu_check()._long_text_task(rows=2)
    tokenized = long_text.tokenize(AutoTokenizer.from_pretrained(zoo.resolve("zoo/gpt2-tiny")),
                                   max_input_length=device.seq_len)
    lengths = {len(ids) for split in (tokenized.pool, tokenized.test) for ids in split["input_ids"]}
    assert lengths == {device.seq_len}
