"""The one training loop and the one loss of the collection side.

Fine-tuning (:mod:`lensllm_nb.collection.finetune`), the zoo's pretraining
(:mod:`lensllm_nb.collection.zoo`) and the NTK probe (:mod:`lensllm_nb.collection.ntk`) all score a
model with the same token cross-entropy (:func:`aligned_logits`: token t of a
causal sequence predicts token t + 1; an encoder-decoder predicts its labels),
and the first two move the weights with the same loop (:func:`train`): AdamW, a
transformers learning-rate schedule, gradient clipping and gradient
accumulation weighted by tokens, so that a step's gradient does not depend on
how it was split into micro-batches.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.collection.training``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FinetuneError
from .device import autocast

__all__ = [
    "IGNORE_INDEX", "Optimization", "aligned_logits", "loss_sum", "train", "evaluate",
    "epoch_groups", "to_device",
]

IGNORE_INDEX = -100  # the Hugging Face convention for label positions without a loss


@dataclass(frozen=True)
class Optimization:
    """How :func:`train` moves the weights.

    Parameters
    ----------
    lr : float
        Peak learning rate of AdamW.
    total_steps : int
        Optimizer steps to take (fewer when ``on_step`` stops early).
    warmup_steps : int
        Steps of learning-rate warm-up.
    weight_decay : float
    betas : tuple of float
        AdamW's moment decays.
    scheduler : str
        A transformers ``get_scheduler`` name.
    max_grad_norm : float or None
        Gradient clipping norm; None disables clipping.
    """

    lr: float
    total_steps: int
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    scheduler: str = "linear"
    max_grad_norm: float | None = 1.0


def aligned_logits(model, inputs, labels):
    """Run `model` on `inputs` and align its logits with the tokens they predict.

    Returns
    -------
    logits : torch.Tensor, shape (tokens, vocab)
        Float32 (bf16 logits would round the per-token losses).
    labels : torch.Tensor
        The targets, shaped like the batch (shifted by one for a causal model).
    """
    logits = model(**inputs, use_cache=False).logits
    if not getattr(model.config, "is_encoder_decoder", False):
        logits, labels = logits[:, :-1], labels[:, 1:]  # token t predicts t + 1
    return logits.float().reshape(-1, logits.shape[-1]), labels


def loss_sum(model, batch):
    """Summed cross-entropy over the label tokens of a batch, and their count."""
    import torch.nn.functional as functional

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits, labels = aligned_logits(model, inputs, batch["labels"])
    summed = functional.cross_entropy(
        logits, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum",
    )
    return summed, int((labels != IGNORE_INDEX).sum())


def train(model, groups, optimization, *, device, precision="fp32", on_step=None, hint=""):
    """Take optimizer steps on `model`, one per group of micro-batches from `groups`.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters with ``requires_grad`` are trained, in place.
    groups : iterable of list of dict
        Each item is one optimizer step's micro-batches (collated tensors);
        iterated until ``optimization.total_steps`` steps are taken.
    optimization : Optimization
    device : torch.device
    precision : {"fp32", "bf16"}
        A resolved precision (:func:`lensllm_nb.collection.device.resolve_precision`).
    on_step : callable, optional
        Called with the step number after each step; returning True stops.
    hint : str
        What to do when the loss diverges, appended to the error.

    Returns
    -------
    dict
        ``steps``, ``tokens`` (input plus decoder tokens seen), ``train_loss``
        (token-weighted mean) and ``step_losses`` (each step's mean loss).

    Raises
    ------
    FinetuneError
        When the loss is not finite.
    """
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=optimization.lr, betas=optimization.betas,
                                  weight_decay=optimization.weight_decay)
    schedule = get_scheduler(optimization.scheduler, optimizer,
                             num_warmup_steps=optimization.warmup_steps,
                             num_training_steps=optimization.total_steps)
    model.train()
    totals = {"steps": 0, "tokens": 0, "loss": 0.0, "count": 0, "step_losses": []}
    for group in groups:
        _accumulate(model, group, totals, device, precision, hint)
        if optimization.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, optimization.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        totals["steps"] += 1
        stop = on_step is not None and on_step(totals["steps"])
        if stop or totals["steps"] >= optimization.total_steps:
            break
    return {
        "steps": totals["steps"],
        "tokens": int(totals["tokens"]),
        "train_loss": totals["loss"] / max(totals["count"], 1),
        "step_losses": totals["step_losses"],
    }


def evaluate(model, features, collate, *, batch_size, device, precision="fp32"):
    """Token-weighted mean loss of `model` over `features` and the token count.

    Rows are sorted by length so that batches pad less; the order does not change the result.
    """
    import torch

    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = to_device(collate([features[i] for i in order[start:start + batch_size]]), device)
            with autocast(device, precision):
                summed, n = loss_sum(model, batch)
            total += summed.item()
            count += n
    if count == 0:
        raise FinetuneError("The evaluation split has no target tokens; check the max lengths.")
    return total / count, count


def epoch_groups(loader, grad_accum):
    """Yield lists of `grad_accum` batches from `loader`, epoch after epoch, forever.

    The last group of an epoch may be shorter: an optimizer step never mixes two epochs.
    """
    while True:
        group = []
        for batch in loader:
            group.append(batch)
            if len(group) == grad_accum:
                yield group
                group = []
        if group:
            yield group


def to_device(batch, device):
    """Move a collated batch to `device` (asynchronously to a GPU)."""
    return {k: v.to(device, non_blocking=device.type == "cuda") for k, v in batch.items()}


# ---------------------------------------------------------------------- helpers
def _accumulate(model, group, totals, device, precision, hint):
    """Backpropagate one step's micro-batches, each weighted by its share of the step's tokens."""
    import torch

    group = [to_device(b, device) for b in group]
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    group_targets = sum(_target_count(b, encoder_decoder) for b in group)
    step_loss = 0.0
    for batch in group:
        with autocast(device, precision):
            summed, count = loss_sum(model, batch)
        if not torch.isfinite(summed):
            raise FinetuneError(
                f"the training loss became {summed.item()} at step {totals['steps'] + 1}; {hint}"
            )
        # Token-weighted over the whole optimizer step, so the gradient does not
        # depend on how the step was split.
        scaled = summed / group_targets
        scaled.backward()
        step_loss += scaled.item()
        totals["loss"] += summed.item()
        totals["count"] += count
        totals["tokens"] += _token_count(batch, encoder_decoder)
    totals["step_losses"].append(step_loss)


def _target_count(batch, encoder_decoder):
    labels = batch["labels"] if encoder_decoder else batch["labels"][:, 1:]
    return max(int((labels != IGNORE_INDEX).sum()), 1)


def _token_count(batch, encoder_decoder):
    tokens = int(batch["attention_mask"].sum())
    if encoder_decoder:
        tokens += int((batch["labels"] != IGNORE_INDEX).sum())
    return tokens
