"""Build the zoo into a fresh cache and print a digest of every candidate's weights.

A check, not a timing: run it before and after a change to the training loop
(or anything the zoo's pretraining calls) and compare the lines. Equal digests
mean the pretrained weights are bit-for-bit the same, so the zoo curves are too.
Each line: name, the first 16 hex digits of a SHA-256 over the sorted state_dict
(names and raw bytes), and the recorded ``pretrain_loss``.

Usage::

    .venv/bin/python benchmarks/zoo_weights_digest.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="LENSLLM_NB_CACHE to build into (default: a new temp dir)")
    args = parser.parse_args(argv)
    os.environ["LENSLLM_NB_CACHE"] = args.cache or tempfile.mkdtemp(prefix="zoo-digest-")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from lensllm_nb.collection import zoo

    for built in zoo.build(progress=False):
        config = AutoConfig.from_pretrained(built.path)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        digest = hashlib.sha256()
        for name, tensor in sorted(auto.from_pretrained(built.path).state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        meta = json.loads((built.path / "zoo.json").read_text(encoding="utf-8"))
        print(built.name, digest.hexdigest()[:16], repr(meta["pretrain_loss"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
