"""Study PM1: the engine's own multiplier for the anchored LensLLM law, checked leave-one-task-out.

On the zoo corpus (3 tasks, ratios 8-64, target the full run) it computes per candidate the
``lensllm`` centre, the reference spread and the noise floor, calibrates the multiplier on two
tasks by ``calibrate_scale``'s rule (the 90% quantile, "higher", of the multipliers each truth
needs) and shows the third task's 90% / 80% coverage, interval score (90%, log loss) and widest
90% high/low, beside the default's SCALE. Declaration and result: docs/LENSLLM_LAW.md.

Usage: ``python benchmarks/bench_lensllm_scale.py``
"""
import warnings

import numpy as np
import pandas as pd

from lensllm_nb.analysis import law_comparison, predict
from lensllm_nb.analysis.noise_floor import visible_noise
from lensllm_nb.analysis.published_curves import load

Q90, Q80 = predict._t2_ppf(0.95), predict._t2_ppf(0.90)


def cases():
    rows = []
    for dataset, ratio, visible, truth, _ in law_comparison._cases(load("zoo_corpus"), law_comparison.RATIOS, None):
        fitted = predict._fit_methods(visible, "lensllm")
        assert fitted["lensllm"].variant_ == "steps"
        center, spread = predict._center_and_spread(fitted, "lensllm")
        rows.append(pd.DataFrame({"dataset": dataset, "ratio": ratio, "c": center, "s": spread,
                                  "n": visible_noise(visible), "y": np.log(truth)}))
    return pd.concat(rows, ignore_index=True)


def calibrate(g):
    needed = predict._needed_scale(np.abs(g["y"] - g["c"]).to_numpy() / Q90, g["s"].to_numpy(), g["n"].to_numpy())
    return float(np.quantile(needed, 0.9, method="higher"))


def scores(g, m):
    """Coverage, interval score and widest high/low of ``g``'s intervals at multiplier ``m`` (one, or one per row)."""
    scale = np.maximum(np.hypot(m * g["s"], g["n"]), 1e-3).to_numpy()
    err = np.abs(g["y"] - g["c"]).to_numpy()
    return {"cov90": np.mean(err <= Q90 * scale), "cov80": np.mean(err <= Q80 * scale),
            "IS90": np.mean(2 * Q90 * scale + 20 * np.maximum(err - Q90 * scale, 0)),
            "widest": float(np.exp(2 * Q90 * scale).max())}


def main():
    warnings.simplefilter("ignore", UserWarning)
    data = cases()
    print(f"multiplier on all three tasks: {calibrate(data):.4f} (the default's SCALE {predict.SCALE})")
    rows = []
    for held in sorted(data["dataset"].unique()):
        m = calibrate(data[data["dataset"] != held])
        g = data[data["dataset"] == held]
        rows.append({"held out": held, "multiplier": m, **scores(g, m),
                     **{f"{k} (SCALE)": v for k, v in scores(g, predict.SCALE).items()}})
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))
    pooled = pd.concat([data[data["dataset"] == r["held out"]].assign(m=r["multiplier"]) for r in rows])
    def shown(d):
        return {k: float(f"{v:.4g}") for k, v in d.items()}

    print(f"pooled held-out: {shown(scores(pooled, pooled['m']))}; with SCALE: {shown(scores(pooled, predict.SCALE))}")


if __name__ == "__main__":
    main()
