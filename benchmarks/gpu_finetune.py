"""GPU fine-tuning throughput (tokens/s) and model-FLOPs utilisation of a GPT-2-small model.

The model is built from ``GPT2Config()`` (124M parameters, no hub download) and
trained on synthetic tokens with the recipe of :class:`lensllm_nb.finetune.FineTuner`
on a GPU: fp32 master weights, bf16 autocast, token-summed cross-entropy in fp32,
AdamW, gradient clipping. It reports tokens/s and MFU, the model FLOPs per second
over the GPU's peak:

    model FLOPs per token = 6 N + 12 L d T      (PaLM, appendix B)

with N parameters, L layers, width d and sequence length T; the second term is
the attention score and value products, which 6 N leaves out.

Runs in well under 5 minutes on one GPU. On a machine without a GPU it prints
why and exits with status 0.

Usage::

    python benchmarks/gpu_finetune.py [--peak-flops 989e12] [--batch-size 16] [--compile]
"""

from __future__ import annotations

import argparse
import sys
import time

H200_BF16_DENSE = 989e12


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-flops", type=float, default=H200_BF16_DENSE,
                        help="the GPU's peak dense bf16 FLOP/s (default: H200, 989e12)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--max-seconds", type=float, default=180.0,
                        help="stop timing early after this many seconds")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(f"gpu_finetune: not measured: torch {torch.__version__} sees no GPU on this machine.")
        return 0
    if not torch.cuda.is_bf16_supported():
        print(f"gpu_finetune: not measured: {torch.cuda.get_device_name()} has no bf16 support.")
        return 0

    import torch.nn.functional as functional
    from transformers import GPT2Config, GPT2LMHeadModel

    device = torch.device("cuda")
    torch.manual_seed(0)
    config = GPT2Config(n_positions=max(1024, args.seq_len))
    model = GPT2LMHeadModel(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * args.seq_len
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward = torch.compile(model) if args.compile else model

    generator = torch.Generator(device=device).manual_seed(0)
    tokens = torch.randint(config.vocab_size, (args.batch_size, args.seq_len), device=device,
                           generator=generator)
    mask = torch.ones_like(tokens)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = forward(input_ids=tokens, attention_mask=mask, use_cache=False).logits
        summed = functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
            reduction="sum",
        )
        (summed / tokens[:, 1:].numel()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return summed

    model.train()
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    done = 0
    while done < args.steps and time.perf_counter() - started < args.max_seconds:
        loss = step()
        done += 1
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    if not torch.isfinite(loss):
        print(f"gpu_finetune: the loss became {loss.item()}; the measurement is invalid.", file=sys.stderr)
        return 1

    per_second = done * args.batch_size * args.seq_len / seconds
    mfu = per_second * flops_per_token / args.peak_flops
    print(f"device            {torch.cuda.get_device_name()} (torch {torch.__version__})")
    print(f"model             GPT-2 small from config, {n_params / 1e6:.1f}M parameters, bf16 autocast"
          f"{', torch.compile' if args.compile else ''}")
    print(f"batch             {args.batch_size} x {args.seq_len} tokens, {done} timed steps "
          f"after {args.warmup} warm-up steps")
    print(f"step time         {1000 * seconds / done:.1f} ms")
    print(f"throughput        {per_second:,.0f} tokens/s")
    print(f"model FLOPs/token {flops_per_token / 1e9:.3f} GFLOP (6N + 12 L d T)")
    print(f"MFU               {100 * mfu:.1f} % of {args.peak_flops / 1e12:.0f} TFLOP/s")
    print(f"peak memory       {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
