"""Issue 22 selection study: every declared pick rule on FLAN, Gigaword, LCDB dev and the zoo curves.

Run: ``LENSLLM_NB_DATA=../shared/benchmarks python benchmarks/bench_selection_study.py [variant ...]``.
Prints, per corpus and method, mean PearCorr, RelAcc and top-1 regret over problems x ratios and the
CPU seconds; the variants are declared in ``docs/SELECTION_STUDY.md`` before they run.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

from lensllm_nb.benchmarks import load
from lensllm_nb.curves import read_curves, validate_curves
from lensllm_nb.metrics import pearcorr, relacc, top1_regret
from lensllm_nb.select import make_selector, visible_from_valid

ZOO = Path(__file__).resolve().parents[1] / "tests" / "data" / "zoo_v4_curves.csv"
# corpus -> (ratios, target or None for each dataset's largest size)
PROTOCOL = {"flan": ((8, 16, 32, 64, 128, 256, 512), None), "gigaword": ((8, 16, 32, 64, 128, 256, 512), None),
            "lcdb_dev": ((4, 8, 16, 32), None), "zoo": ((16, 32, 64), 2048)}
VARIANTS = {
    "subtuning": ("subtuning", {}), "ats": ("ats", {}), "curvature_drift": ("curvature_drift", {}),
    "P1": ("backtested_pick", {"origins": "half", "no_origin": "leader", "margin_test": False}),
    "P2": ("backtested_pick", {"origins": "half", "no_origin": "predicted", "margin_test": False}),
    "P3": ("backtested_pick", {"origins": "all", "no_origin": "leader", "margin_test": False}),
    "P4": ("backtested_pick", {"origins": "half", "no_origin": "leader", "margin_test": True}),
    "P5": ("backtested_pick", {"origins": "half", "no_origin": "leader", "margin_test": True, "short_lines": True}),
}


def corpus(name):
    """The validated tidy table of one corpus."""
    return validate_curves(read_curves(ZOO) if name == "zoo" else load(name))


def cases(df, ratios, target):
    """(visible curves, truth series) for every dataset x ratio."""
    for _, rows in df.groupby("dataset"):
        tgt = target or int(rows["n_train"].max())
        truth = rows[rows["n_train"] == tgt].groupby("model")["test_loss"].mean()
        for ratio in ratios:
            yield visible_from_valid(rows[rows["n_train"] <= tgt // ratio], max_train=tgt // ratio, target=tgt), truth


def score(method, params, prepared):
    """Mean PearCorr, RelAcc, regret over the prepared cases, and the picks."""
    out, picks = [], []
    for visible, truth in prepared:
        sel = make_selector(method, **params).fit_visible(visible)
        true = truth.reindex(visible.models).to_numpy()
        out.append((pearcorr(sel.predictions_.to_numpy(), true), relacc(truth[sel.chosen_], true),
                    top1_regret(truth[sel.chosen_], true)))
        picks.append(sel.chosen_)
    return np.mean(out, axis=0), picks


def main(names):
    warnings.simplefilter("ignore", UserWarning)
    for corpus_name, (ratios, target) in PROTOCOL.items():
        prepared = list(cases(corpus(corpus_name), ratios, target))
        for name in names:
            start = time.process_time()
            (pear, rel, reg), picks = score(*VARIANTS[name], prepared)
            extra = f" picks {picks}" if corpus_name == "zoo" else ""
            print(f"{corpus_name:9s} {name:16s} PearCorr {pear:.4f} RelAcc {rel:.4f} regret {reg:.4f} "
                  f"({time.process_time() - start:.1f} s CPU, {len(prepared)} cases){extra}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(VARIANTS))
