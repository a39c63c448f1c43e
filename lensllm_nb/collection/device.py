"""Where and how precisely collection runs compute: device, precision and CPU threads.

Fine-tuning, the zoo's pretraining and the NTK probe all run on a torch device
chosen by name, at a precision resolved for that device, with a CPU thread
count that may differ from torch's global setting. These are the only places
that decide it. Torch is imported inside each function, so importing this
module costs nothing.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import ConfigError

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "autocast", "torch_threads"]

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device="auto"):
    """Return the torch device for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    ConfigError
        For an unknown name, or a GPU that torch does not see.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        return _cuda_device(device)
    raise ConfigError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")


def resolve_precision(precision, device) -> str:
    """Return ``"fp32"`` or ``"bf16"`` for `precision` (``"auto"``, ``"fp32"``, ``"bf16"``) on `device`.

    ``"auto"`` is bf16 only on a GPU that has it: CPU bf16 autocast is slower
    than fp32.

    Raises
    ------
    ConfigError
        For ``"bf16"`` on a GPU without bf16.
    """
    import torch

    if precision == "fp32":
        return "fp32"
    bf16_ok = device.type == "cpu" or torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if not bf16_ok:
            raise ConfigError("`precision`='bf16' but this GPU does not support bf16; use 'fp32'.")
        return "bf16"
    return "bf16" if device.type == "cuda" and bf16_ok else "fp32"


def autocast(device, precision):
    """The autocast context of a resolved `precision` on `device` (a no-op for fp32).

    Master weights stay fp32 (autocast only lowers the matmuls), which keeps AdamW exact.
    """
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextmanager
def torch_threads(threads):
    """Run a block with `threads` torch CPU threads, then restore the previous count.

    Parameters
    ----------
    threads : int or None
        None leaves torch's setting alone.
    """
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cuda_device(device):
    import torch

    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"`device` {device!r} is not a device name; use 'cuda' or 'cuda:0'.") from None
    if not torch.cuda.is_available():
        raise ConfigError(
            f"`device`={device!r} but torch {torch.__version__} sees no GPU; pass "
            "device='auto' or 'cpu', or install a CUDA build of torch on a GPU machine."
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ConfigError(
            f"`device`={device!r} but only {torch.cuda.device_count()} GPU(s) are visible."
        )
    return resolved
