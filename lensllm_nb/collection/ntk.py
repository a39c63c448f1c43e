"""Empirical neural tangent kernel (NTK) of a model on a probe set, sketched.

The LensLLM law uses the NTK of a pretrained model to describe how fast
fine-tuning can lower the loss before the power-law phase. With f(x) the loss of
example x and θ the trainable parameters, the empirical NTK on a probe set of n
examples is the Gram matrix

    Θ_ij = <∇_θ f(x_i), ∇_θ f(x_j)>,

Details and derivations: docs/METHODS.md, section ``lensllm_nb.collection.ntk``.
"""

from __future__ import annotations

import math
import numbers
import time
import zlib
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np

from ..analysis.ntk_features import SKETCHES, NTKFeatures, _float_array
from ..errors import ConfigError
from ..utils.validation import check_choice
from .training import IGNORE_INDEX, aligned_logits

__all__ = ["NTKFeatures", "SKETCHES", "compute_ntk", "pairwise_ntk", "per_example_losses"]

# How many random numbers are drawn at once while sketching. It bounds the extra
# memory of the sketch (32 MiB of int64 hashes, or 16 MiB of float32 signs) and
# fixes the chunk boundaries, so the sketch depends on the seed only, never on
# the micro-batch size.
_RANDOM_BLOCK = 1 << 22


def per_example_losses(model, batch):
    """Mean token cross-entropy of each example, differentiable.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (labels aligned with ``input_ids``, shifted here as the
        model's own loss does) or an encoder-decoder model (``labels`` are the
        decoder targets; ``decoder_input_ids`` are made from them when missing).
    batch : dict of torch.Tensor
        ``input_ids``, ``labels`` and optionally ``attention_mask``,
        ``decoder_input_ids`` and other model inputs, all with leading dimension
        n. Label positions equal to -100 carry no loss. Moved to the model's
        device; not modified.

    Returns
    -------
    torch.Tensor, shape (n,)
        Float32 losses, attached to the autograd graph.
    """
    import torch.nn.functional as functional

    _check_batch(batch)
    device = _model_device(model)
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    labels = batch["labels"].to(device)
    if getattr(model.config, "is_encoder_decoder", False):
        if "decoder_input_ids" not in inputs:
            prepare = getattr(model, "prepare_decoder_input_ids_from_labels", None)
            if prepare is None:
                raise ConfigError(
                    f"`batch` has no 'decoder_input_ids' and {type(model).__name__} cannot make them "
                    "from the labels; add batch['decoder_input_ids'] (the labels shifted right)."
                )
            inputs["decoder_input_ids"] = prepare(labels=labels)
    logits, targets = aligned_logits(model, inputs, labels)
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    if bool((counts == 0).any()):
        empty = (counts == 0).nonzero().flatten().tolist()
        raise ConfigError(
            f"`batch['labels']` has no target token in example(s) {empty[:10]} (all -100 after the "
            "shift); drop those examples or give them at least one label that is not -100."
        )
    token_losses = functional.cross_entropy(
        logits, targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none",
    ).view(targets.shape)
    return token_losses.sum(dim=1) / counts


def compute_ntk(model, batch, *, sketch_dim=4096, sketch="countsketch", seed=0, micro_batch=1,
                device=None, target=None) -> NTKFeatures:
    """Sketched empirical NTK of ``model`` on the probe examples in ``batch``.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Causal LM or encoder-decoder model. Put in eval mode (no dropout) for the
        computation and restored to its previous train/eval modes; its weights
        and ``.grad`` fields are not touched. Parameters with
        ``requires_grad=False`` are left out (with LoRA: the adapter NTK).
    batch : dict of torch.Tensor
        Probe examples, as for :func:`per_example_losses`.
    sketch_dim : int, default 4096
        k, the dimension of each compressed gradient (ignored for ``'exact'``).
        The relative Frobenius error of Θ shrinks like 1/√k; it is about
        √(n/k) when the n gradients are nearly orthogonal (random inputs), less
        when they share a common direction (real text on a pretrained model).
    sketch : {'countsketch', 'rademacher', 'exact'}
        CountSketch hashes each gradient entry to one of k buckets with a random
        sign (cost O(P) per example); Rademacher multiplies by a dense random
        ±1/√k matrix (cost O(P·k) per micro-batch: small models only); exact
        keeps the full gradients (O(n·P) memory: tests and small models).
    seed : int, default 0
        Seed of the sketch; the same seed gives the same sketch.
    micro_batch : int, default 1
        Per-example gradients held at once and sketched together, so that they
        share the random draws of the sketch: faster on small models, at the
        price of ``micro_batch`` full gradients in memory. Every example still
        has its own forward and backward pass (a backward pass through a
        batched forward costs as much as the whole batch).
    device : str or torch.device, optional
        Where to compute; default the model's device. A model on another device
        is moved there for the computation and moved back afterwards.
    target : array_like, shape (n,), optional
        The losses fine-tuning drives toward (:attr:`NTKFeatures.target`);
        zeros by default.

    Returns
    -------
    NTKFeatures
        Θ = G Gᵀ from the n × k sketched gradients G, its spectrum, and f0.

    Raises
    ------
    ConfigError
        For a bad argument, an empty batch, or a model with no trainable
        parameter.
    """
    import torch

    started = time.perf_counter()
    check_choice("sketch", sketch, SKETCHES, fix="pass e.g. sketch='countsketch'")
    k = _check_int("sketch_dim", sketch_dim, 1, "sketch_dim=4096")
    seed = _check_int("seed", seed, 0, "seed=0")
    micro_batch = _check_int("micro_batch", micro_batch, 1, "micro_batch=1")
    n = _check_batch(batch)
    if target is not None:
        # Checked now rather than after minutes of backward passes.
        target = _float_array("target", target, ndim=1)
        if target.shape != (n,):
            raise ConfigError(f"`target` must hold one loss per probe example ({n}), got shape "
                              f"{target.shape}; pass an array of length {n} or None for zeros.")
    params = _trainable(model)
    names = [name for name, _ in params]
    tensors = [p for _, p in params]
    n_params = sum(p.numel() for p in tensors)
    home = _model_device(model)
    work = _resolve_device(device, home)
    width = n_params if sketch == "exact" else k

    if work != home:
        model.to(work)
    try:
        with _eval_mode(model), torch.enable_grad():
            sketched = torch.zeros(n, width, dtype=torch.float32, device=work)
            f0 = np.empty(n)
            for start in range(0, n, micro_batch):
                rows = range(start, min(n, start + micro_batch))
                grads = []
                for i in rows:
                    f0[i], gradient = _example_gradient(model, batch, i, tensors)
                    grads.append(gradient)
                sketched[start:rows.stop] = _sketch(grads, names, tensors, sketch, width, seed)
            gram = _gram(sketched)
    finally:
        if work != home:
            model.to(home)
    return NTKFeatures.from_gram(gram, f0, target, sketch_dim=width, sketch=sketch, n_params=n_params,
                                 seconds=time.perf_counter() - started, seed=seed)


def pairwise_ntk(model, batch) -> np.ndarray:
    """Exact NTK by the pairwise approach: one backward pass per pair (n² in all).

    For each row i the gradient of example i is taken once (it also gives
    Θ_ii); every other entry Θ_ij is its own forward and backward pass of
    example j, dotted with it. Memory is two gradients, time is n² passes. The
    reference :func:`compute_ntk` is compared with; not for production use.

    Parameters
    ----------
    model, batch
        As for :func:`compute_ntk`.

    Returns
    -------
    numpy.ndarray, shape (n, n)
        Θ in float64 (entries computed independently, so symmetric up to
        round-off).
    """
    import torch

    n = _check_batch(batch)
    tensors = [p for _, p in _trainable(model)]
    theta = np.empty((n, n))
    with _eval_mode(model), torch.enable_grad():
        for i in range(n):
            g_i = _flat_float64(_example_gradient(model, batch, i, tensors)[1], tensors)
            theta[i, i] = float(torch.dot(g_i, g_i))
            for j in range(n):
                if j != i:
                    g_j = _flat_float64(_example_gradient(model, batch, j, tensors)[1], tensors)
                    theta[i, j] = float(torch.dot(g_i, g_j))
    return theta


# -- helpers -------------------------------------------------------------------

def _sketch(grads, names, tensors, sketch, width, seed):
    """Compress the gradients of m examples to an (m, width) float32 tensor.

    ``grads[e][p]`` is example e's gradient of parameter tensor p (None when the
    parameter is unused). Each parameter tensor is processed in chunks of
    :data:`_RANDOM_BLOCK` random draws; a chunk's randomness depends only on
    (seed, parameter name, chunk index), so every example, micro-batch and
    call sees the same sketch.
    """
    import torch

    m = len(grads)
    device = tensors[0].device
    out = torch.zeros(m, width, dtype=torch.float32, device=device)
    offset = 0  # column of the next parameter, for 'exact'
    for p, (name, tensor) in enumerate(zip(names, tensors)):
        size = tensor.numel()
        if all(g[p] is None for g in grads):
            offset += size
            continue
        flat = torch.stack([
            torch.zeros(size, device=device) if g[p] is None else g[p].reshape(-1).float()
            for g in grads
        ])
        if sketch == "exact":
            out[:, offset:offset + size] = flat
            offset += size
            continue
        # CountSketch draws one number per entry; Rademacher a row of `width`.
        chunk = _RANDOM_BLOCK if sketch == "countsketch" else max(1, _RANDOM_BLOCK // width)
        for index, begin in enumerate(range(0, size, chunk)):
            piece = flat[:, begin:begin + chunk]
            generator = _generator(seed, name, index, device)
            if sketch == "countsketch":
                # One draw in [0, 2k) gives both the bucket (high bits) and the sign (low bit).
                draw = torch.randint(0, 2 * width, (piece.shape[1],), generator=generator, device=device)
                buckets, signs = draw >> 1, 1.0 - 2.0 * (draw & 1).float()
                # Row by row: on CPU a 1-D scatter measured about 3× faster than
                # index_add_ along the columns of an (8, k) block.
                for row, values in zip(out, piece):
                    row.scatter_add_(0, buckets, values * signs)
            else:
                # With random bits B, the ±1 matrix is 2B − 1, and x(2B − 1) = 2xB − Σx:
                # one matmul on the bits, no pass over the block to make the signs.
                bits = torch.randint(0, 2, (piece.shape[1], width), generator=generator,
                                     device=device, dtype=torch.float32)
                out.addmm_(piece, bits, alpha=2.0)
                out.sub_(piece.sum(dim=1, keepdim=True))
    if sketch == "rademacher":
        out /= math.sqrt(width)
    return out


def _gram(sketched):
    """G Gᵀ in float64, accumulated over column blocks.

    Float64 keeps the exact kernel equal to the pairwise one to round-off; the
    blocks avoid a float64 copy of G, which for ``sketch='exact'`` is n × P.
    """
    import torch

    n, width = sketched.shape
    gram = torch.zeros(n, n, dtype=torch.float64, device=sketched.device)
    step = max(1, _RANDOM_BLOCK // n)
    for begin in range(0, width, step):
        block = sketched[:, begin:begin + step].double()
        gram.addmm_(block, block.T)
    return gram.cpu().numpy()


def _generator(seed, name, index, device):
    """A torch generator seeded from (seed, parameter name, chunk index)."""
    import torch

    # crc32 of the name, not hash(): Python salts str hashes per process.
    words = np.random.SeedSequence([seed, zlib.crc32(name.encode()), index]).generate_state(2)
    generator = torch.Generator(device=device)
    generator.manual_seed((int(words[0]) << 32 | int(words[1])) & (2**63 - 1))
    return generator


def _example_gradient(model, batch, i, tensors):
    """Loss of example i (a float) and its gradient per tensor (None where unused)."""
    import torch

    loss = per_example_losses(model, {key: value[i:i + 1] for key, value in batch.items()})[0]
    return float(loss.detach()), torch.autograd.grad(loss, tensors, allow_unused=True)


def _flat_float64(grads, tensors):
    """One float64 vector from a gradient tuple, zeros for unused tensors."""
    import torch

    return torch.cat([
        torch.zeros(t.numel(), dtype=torch.float64, device=t.device) if g is None
        else g.reshape(-1).double()
        for g, t in zip(grads, tensors)
    ])


def _trainable(model):
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ConfigError(
            f"`model` ({type(model).__name__}) has no parameter with requires_grad=True, so its NTK "
            "is empty; unfreeze the parameters the NTK should cover (e.g. p.requires_grad_(True))."
        )
    return params


@contextmanager
def _eval_mode(model):
    """Eval mode for the block, then every submodule's own previous mode back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        # modules() lists parents before children, so a child's own mode wins.
        for module, training in modes:
            module.train(training)


def _model_device(model):
    return next(model.parameters()).device


def _resolve_device(device, home):
    import torch

    if device is None:
        return home
    try:
        work = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"`device` {device!r} is not a torch device; pass None, 'cpu' or 'cuda'.") from None
    if work.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` {device!r} asks for a GPU but torch sees none; pass device=None or 'cpu'.")
    if work.type == home.type and (work.index is None or work.index == home.index):
        return home
    return work


def _check_batch(batch) -> int:
    """Return the number of examples n of a probe batch, or raise ConfigError."""
    import torch

    if not isinstance(batch, Mapping) or not batch:
        raise ConfigError(
            f"`batch` must be a non-empty dict of tensors (input_ids, attention_mask, labels), got "
            f"{type(batch).__name__} {batch!r:.80}; tokenize the probe set with return_tensors='pt'."
        )
    missing = [key for key in ("input_ids", "labels") if key not in batch]
    if missing:
        raise ConfigError(f"`batch` lacks {missing} (has {list(batch)}); add them, with -100 in "
                          "`labels` where no loss is wanted.")
    n = None
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or value.ndim == 0:
            raise ConfigError(f"`batch[{key!r}]` must be a tensor with a leading example dimension, got "
                              f"{type(value).__name__}; tokenize with return_tensors='pt'.")
        n = value.shape[0] if n is None else n
        if value.shape[0] != n:
            raise ConfigError(f"`batch[{key!r}]` has {value.shape[0]} examples but the other entries have "
                              f"{n}; every entry needs the same leading dimension.")
    if n == 0:
        raise ConfigError("`batch` is empty (0 examples); pass at least one probe example, e.g. 32.")
    return n


def _check_int(name, value, minimum, example) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer ≥ {minimum}, got {value!r}; pass e.g. {example}.")
    return int(value)


