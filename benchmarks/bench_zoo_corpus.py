"""The LensLLM paper's claims on the zoo corpus: fit RMSE, extrapolation error, selection.

Reads the packaged corpus (``lensllm_nb.analysis.published_curves.load("zoo_corpus")``, built by
``benchmarks/build_zoo_corpus.py``) and prints, as Markdown, the three tables of
:mod:`lensllm_nb.analysis.law_comparison` (both LensLLM variants beside vanilla, rectified,
AtS and the default method), the sanity of the engine's ``lensllm`` intervals and
the CPU time.

Usage: ``python benchmarks/bench_zoo_corpus.py [--json OUT.json]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def _markdown(frame, floatfmt="{:.4f}"):
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(floatfmt.format(v) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def _interval_sanity(table, ratios):
    from lensllm_nb.analysis.predict import predict_candidates

    rows = []
    for dataset in sorted(table["dataset"].unique()):
        part = table[table["dataset"] == dataset]
        target = int(part["n_train"].max())
        for ratio in ratios:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                frame = predict_candidates(part, max_train=target // ratio, target=target, method="lensllm").frame
            rows.append({"dataset": dataset, "ratio": ratio, "max high/low": float((frame["high"] / frame["low"]).max()),
                         "max expected_regret": float(frame["expected_regret"].max()),
                         "finite": bool(np.isfinite(frame[["low", "high", "expected_regret"]].to_numpy()).all())})
    import pandas as pd

    return pd.DataFrame(rows)


def _complete(table):
    """Only curves with their full run (a build in progress has some without); says what it leaves out."""
    full = table.groupby("dataset")["n_train"].transform("max")
    done = set(zip(table.loc[table["n_train"] == full, "dataset"], table.loc[table["n_train"] == full, "model"]))
    keep = [(d, m) in done for d, m in zip(table["dataset"], table["model"])]
    left = sorted({(d, m) for d, m in zip(table["dataset"], table["model"])} - done)
    if left:
        print(f"left out (no full run yet): {left}")
    return table[keep]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="also write every table as JSON here")
    args = parser.parse_args(argv)
    from lensllm_nb.analysis import law_comparison, published_curves as benchmarks

    cpu, wall = time.process_time(), time.perf_counter()
    table = _complete(benchmarks.load("zoo_corpus"))
    ratios = law_comparison.RATIOS
    fits = law_comparison.fit_rmse_table(table)
    extra = law_comparison.extrapolation_table(table, ratios)
    selection = law_comparison.selection_table(table, ratios)
    sanity = _interval_sanity(table, ratios)
    laws = list(law_comparison.LAW_NAMES)
    print("## Fit RMSE of log loss, all sizes (per model)\n")
    print(_markdown(fits))
    print("\nmedian per dataset:\n")
    print(_markdown(fits.groupby("dataset")[laws].median().reset_index()))
    print("\nmedian over all curves:", {k: round(float(v), 5) for k, v in fits[laws].median().items()})
    print("\n## Extrapolation: mean |log predicted − log true| of the full run, sizes <= full / r\n")
    print(_markdown(extra.pivot_table(index="method", columns="ratio", values="abs_log_error", aggfunc="mean")
                    .reindex(law_comparison.METHOD_NAMES).reset_index()))
    print("\nper dataset:\n")
    print(_markdown(extra.pivot_table(index=["dataset", "method"], columns="ratio", values="abs_log_error",
                                      aggfunc="mean").reset_index()))
    for metric in ("pearson", "relacc", "regret"):
        print(f"\n## Selection: {metric} per dataset and ratio\n")
        wide = selection.pivot_table(index="method", columns=["dataset", "ratio"], values=metric, aggfunc="first")
        wide.columns = [f"{d} /{r}" for d, r in wide.columns]
        print(_markdown(wide.reindex(law_comparison.METHOD_NAMES).reset_index()))
    print("\nmean over datasets and ratios:\n")
    print(_markdown(selection.groupby("method")[["pearson", "relacc", "regret"]].mean()
                    .reindex(law_comparison.METHOD_NAMES).reset_index()))
    print("\n## Engine intervals of `lensllm`\n")
    print(_markdown(sanity))
    print(f"\nCPU {time.process_time() - cpu:.1f} s, wall {time.perf_counter() - wall:.1f} s")
    if args.json:
        doc = {name: frame.to_dict("records") for name, frame in
               (("fit_rmse", fits), ("extrapolation", extra), ("selection", selection), ("intervals", sanity))}
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(doc, out, default=float)


if __name__ == "__main__":
    main()
