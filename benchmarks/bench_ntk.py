"""Benchmark: sketched NTK (compute_ntk) against the pairwise approach (pairwise_ntk).

A GPT-2-like model of about 2M parameters is built from a config (random weights,
no download) and probed with n random examples. The script times

* ``compute_ntk`` with CountSketch (k = 4096): n backward passes;
* ``pairwise_ntk``: one backward pass per pair, n² in all;

and reports the speed-up and the relative Frobenius error of the sketch against
the exact NTK (``compute_ntk(sketch='exact')``, itself checked against the
pairwise one). Run from the repository root:

    .venv/bin/python benchmarks/bench_ntk.py

Times are wall-clock on whatever machine runs it; compare the ratio, which is
measured within one run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch
import transformers

from lensllm_nb.collection.ntk import compute_ntk, pairwise_ntk


def _model(layers, width, vocab, length):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=layers, n_embd=width, n_head=4, vocab_size=vocab,
                                     n_positions=length, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


def _batch(n, length, vocab):
    ids = torch.randint(0, vocab, (n, length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def _relative_error(approx, exact):
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="probe examples")
    parser.add_argument("--length", type=int, default=32, help="tokens per example")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--sketch-dim", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is steadiest on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = _model(args.layers, args.width, args.vocab, args.length)
    batch = _batch(args.n, args.length, args.vocab)
    params = sum(p.numel() for p in model.parameters())
    # Warm-up: the first autograd pass pays one-off allocation and kernel set-up.
    compute_ntk(model, {k: v[:2] for k, v in batch.items()}, sketch_dim=args.sketch_dim)

    sketched, t_sketch = _timed(compute_ntk, model, batch, sketch_dim=args.sketch_dim)
    grouped, t_grouped = _timed(compute_ntk, model, batch, sketch_dim=args.sketch_dim, micro_batch=8)
    # The error of a JL sketch shrinks like 1/sqrt(k): one larger k shows the trend.
    wide, t_wide = _timed(compute_ntk, model, batch, sketch_dim=4 * args.sketch_dim)
    exact, t_exact = _timed(compute_ntk, model, batch, sketch="exact")
    pairwise, t_pairwise = _timed(pairwise_ntk, model, batch)

    n = args.n
    rows = [
        ("pairwise_ntk (exact)", f"{n * n}", t_pairwise, 1.0, 0.0),
        ("compute_ntk exact", f"{n}", t_exact, t_pairwise / t_exact, _relative_error(exact.gram, pairwise)),
        (f"compute_ntk countsketch k={args.sketch_dim}", f"{n}", t_sketch, t_pairwise / t_sketch,
         _relative_error(sketched.gram, exact.gram)),
        (f"compute_ntk countsketch k={args.sketch_dim}, micro_batch=8", f"{n}", t_grouped,
         t_pairwise / t_grouped, _relative_error(grouped.gram, exact.gram)),
        (f"compute_ntk countsketch k={4 * args.sketch_dim}", f"{n}", t_wide, t_pairwise / t_wide,
         _relative_error(wide.gram, exact.gram)),
    ]
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"model: GPT-2-like, {args.layers} layers, width {args.width}, vocab {args.vocab}, "
          f"{params / 1e6:.2f}M params; n = {n} probe examples of {args.length} tokens; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print()
    print("| method | backward passes | seconds | speed-up vs pairwise | rel. Frobenius error vs exact |")
    print("|---|---:|---:|---:|---:|")
    for name, passes, seconds, speedup, error in rows:
        print(f"| {name} | {passes} | {seconds:.2f} | {speedup:.1f}× | {error:.2e} |")


if __name__ == "__main__":
    main()
