"""Study (rejected, not shipped): the LensLLM steps law with one exponent shared by a task's candidates.

At 3 visible sizes (zoo corpus, ratio 64: sizes 16, 32, 64, target 4,096) the per-curve
steps law has no residual freedom and falls back to the AtS line. This script fits
B_j / (F_j(Θ_j, η t_j(D)) + D**β) + E_j with β shared over the candidates and prints
PearCorr / RelAcc / log regret beside the AtS line and subtuning. Declaration and result:
docs/LENSLLM_LAW.md, "A shared exponent at 3 visible sizes".

Usage: ``python benchmarks/bench_shared_exponent.py``
"""
import numpy as np

from lensllm_nb.analysis import metrics, published_curves
from lensllm_nb.analysis.ntk_law import _BETAS, _E_CEILING, _grid_cell, _log_predict, _steps_line
from lensllm_nb.analysis.selection import ats_line_prediction

FULL, VIS = 4096, (16, 32, 64)


def score(name, pred, true):
    pred, true = np.array(pred), np.array(true)
    c = int(np.argmin(pred))
    return (name, round(metrics.pearcorr(pred, true), 3), round(metrics.relacc(true[c], true), 3),
            round(float(np.log(true[c]) - np.log(true.min())), 4))


def main():
    t = published_curves.load("zoo_corpus")
    ntk = t.attrs["ntk"]
    for ds, g in t.groupby("dataset"):
        curves = {}
        for m, gm in g.groupby("model"):
            v = gm[gm.n_train.isin(VIS)].sort_values("n_train")
            full = gm[gm.n_train == FULL].test_loss.iloc[0]
            curves[m] = (v.n_train.to_numpy(float), v.test_loss.to_numpy(float), v.steps.to_numpy(float),
                         float(v.lr.iloc[0]), full)
        models = sorted(curves)
        best = (np.inf, None)
        for beta in _BETAS:
            tot, fits = 0.0, {}
            for m in models:
                D, L, s, lr, _ = curves[m]
                F = ntk[ds][m].F(s, lr)
                cell = _grid_cell(beta, np.log(D), np.log(L), F, _E_CEILING * L.min())
                if cell is None:
                    tot = np.inf
                    break
                tot += cell[0]
                fits[m] = cell[1]
            if tot < best[0]:
                best = (tot, beta, fits)
        _, beta, fits = best
        pred_shared, pred_ats, pred_sub, true = [], [], [], []
        for m in models:
            D, L, s, lr, full = curves[m]
            a, b = _steps_line(D, s)
            steps_full = np.exp(a + b * np.log(FULL))
            F_full = ntk[ds][m].F(np.array([steps_full]), lr)
            pred_shared.append(float(np.exp(_log_predict(fits[m], np.log(FULL), F_full)[0])))
            pred_ats.append(ats_line_prediction(D, L, FULL))
            pred_sub.append(L[-1])
            true.append(full)
        print(ds, "beta", round(float(beta), 3))
        for name, pred in (("shared_beta", pred_shared), ("ats_line", pred_ats), ("subtuning", pred_sub)):
            print("  ", score(name, pred, true))


if __name__ == "__main__":
    main()
