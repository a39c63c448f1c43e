"""The GPU path: FineTuner in bf16 on CUDA, LoRA, seq2seq, and the NTK sketch on CUDA.

Each test takes a ``device``. Its ``"cpu"`` case runs in the normal suite and
checks the test's own logic (there, bf16 is compared with fp32 as fp32 against
fp32, which must agree to round-off). Its ``"cuda"`` case carries the ``gpu``
marker, is skipped where torch sees no GPU, and runs on a GPU machine with
``pytest -m gpu tests/test_gpu.py`` (benchmarks/gpu_check.py does that first).
"""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lensllm_nb.collection import zoo  # noqa: E402
from lensllm_nb.collection.data import TaskData  # noqa: E402
from lensllm_nb.collection.finetune import FineTuner  # noqa: E402
from lensllm_nb.collection.ntk import compute_ntk  # noqa: E402

NO_CUDA = (f"no CUDA GPU: torch {torch.__version__} sees none; run `pytest -m gpu tests/test_gpu.py` "
           "on a GPU machine (benchmarks/gpu_check.py does)")
CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                        reason=NO_CUDA)])
DEVICES = ["cpu", CUDA]
# The GPT-2 built from a config: GPT-2 small (124M) on a GPU, a 2-layer one on CPU.
GPT2_SIZES = {"cuda": {}, "cpu": {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128,
                                   "vocab_size": 2304}}
STEPS = (1, 2, 4)  # the first optimizer steps whose test losses are compared
# Every weight trained (the demo's LoRA is tested on its own below).
SETTINGS = {**zoo.DEMO_SETTINGS, "lora": False, "batch_size": 8, "lr": 1e-3, "warmup_ratio": 0.0,
            "scheduler": "constant", "progress": False}
# bf16 autocast against fp32 after a few steps; fp32 against fp32 must agree to round-off.
LOSS_TOLERANCE = {"bf16": 1e-2, "fp32": 1e-6}


def load_gpu_check():
    """benchmarks/gpu_check.py as a module (a script, not part of the package)."""
    if "gpu_check" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
        spec = importlib.util.spec_from_file_location("gpu_check", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


@pytest.fixture(scope="module")
def task(zoo_models):
    """The zoo task cut to 128 training and 64 test examples.

    These tests compare runs with each other; each FineTuner tokenizes its task
    once and evaluates the test split after every run, which on CPU is most of
    the time of a run this short.
    """
    full = zoo.task_data(test_size=64)
    return TaskData.from_records(full.pool_.select(range(128)).to_list(), full.test_.to_list(),
                                 name="zoo-cut", format="pairs")


@pytest.fixture(scope="module")
def gpt2_from_config(zoo_models, tmp_path_factory):
    """Folder of a randomly initialised GPT-2 per device size, built on first use."""
    folders = {}

    def build(device):
        if device not in folders:
            folder = tmp_path_factory.mktemp(f"gpt2-{device}")
            folders[device] = load_gpu_check().gpt2_folder(folder, zoo.resolve("zoo/gpt2-tiny"),
                                                            **GPT2_SIZES[device])
        return str(folders[device])

    return build


def _precision(device):
    return "bf16" if device == "cuda" else "fp32"


def _check_record(record, device, precision):
    assert record["status"] == "ok" and math.isfinite(record["test_loss"])
    assert record["device"].startswith(device) and record["precision"] == precision


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", ["zoo/gpt2-tiny", "gpt2-from-config"])
def test_finetune_restores_weights_and_matches_fp32(task, gpt2_from_config, device, model):
    name = gpt2_from_config(device) if model == "gpt2-from-config" else model
    precision = _precision(device)
    tuner = FineTuner(name, device=device, precision=precision, max_steps=STEPS[-1], **SETTINGS)
    zero = tuner.run(task, 0)
    trained = tuner.run(task, 64)
    _check_record(zero, device, precision)
    _check_record(trained, device, precision)
    assert trained["steps"] == STEPS[-1] and trained["test_loss"] != zero["test_loss"]
    # The pretrained weights come back between sizes: the zero-shot loss repeats.
    assert tuner.run(task, 0)["test_loss"] == pytest.approx(zero["test_loss"], rel=1e-5)
    curve, fp32_curve = (
        [FineTuner(name, device=device, precision=p, max_steps=s, **SETTINGS).run(task, 64)["test_loss"]
         for s in STEPS]
        for p in (precision, "fp32")
    )
    np.testing.assert_allclose(curve, fp32_curve, rtol=LOSS_TOLERANCE[precision])
    assert curve[-1] == pytest.approx(trained["test_loss"], rel=1e-4)  # CUDA atomics: not bitwise


@pytest.mark.parametrize("device", DEVICES)
def test_lora_trains_adapters_on_the_device(task, device):
    tuner = FineTuner("zoo/gpt2-tiny", device=device, precision=_precision(device), max_steps=3,
                      **{**SETTINGS, "lora": True, "lora_r": 4})
    zero = tuner.run(task, 0)
    trained = tuner.run(task, 32)
    _check_record(trained, device, _precision(device))
    assert 0 < tuner.trainable_params_ < 0.2 * tuner.params_
    assert all(p.device.type == device for p in tuner.model_.parameters())
    assert trained["test_loss"] != zero["test_loss"]
    assert tuner.run(task, 0)["test_loss"] == pytest.approx(zero["test_loss"], rel=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_seq2seq_t5_finetunes_on_the_device(task, device):
    tuner = FineTuner("zoo/t5-small", device=device, precision=_precision(device), max_steps=3, **SETTINGS)
    zero = tuner.run(task, 0)
    trained = tuner.run(task, 32)
    _check_record(trained, device, _precision(device))
    assert tuner.encoder_decoder_ and trained["steps"] == 3
    assert trained["test_loss"] != zero["test_loss"]


@pytest.mark.parametrize("device", DEVICES)
def test_ntk_sketch_on_the_device_agrees_with_cpu(device):
    from test_ntk import _gpt2  # the tiny GPT-2 and probe batch of the NTK unit tests

    model, batch = _gpt2()
    on_cpu = compute_ntk(model, batch, sketch="exact")
    on_device = compute_ntk(model, batch, sketch="exact", device=device)
    # compute_ntk moves the model to the device for the computation and back.
    assert all(p.device.type == "cpu" for p in model.parameters())
    np.testing.assert_allclose(on_device.f0, on_cpu.f0, rtol=1e-5)
    assert np.linalg.norm(on_device.gram - on_cpu.gram) <= 1e-4 * np.linalg.norm(on_cpu.gram)
    # On CUDA the sketch draws its random numbers with a CUDA generator, so it is a
    # different (equally valid) sketch than on CPU: compare each with the exact kernel.
    sketches = [compute_ntk(model, batch, sketch_dim=4096, device=d) for d in ("cpu", device, device)]
    for sketch in sketches:
        assert np.linalg.norm(sketch.gram - on_cpu.gram) <= 0.10 * np.linalg.norm(on_cpu.gram)
    # Same seed, same sketch (to round-off: CUDA's scatter-add sums in any order).
    assert np.linalg.norm(sketches[1].gram - sketches[2].gram) <= 1e-5 * np.linalg.norm(sketches[1].gram)
