"""Issue 22 selection study: every declared pick rule on FLAN, Gigaword, LCDB dev and the zoo curves.

Run: ``LENSLLM_NB_DATA=../shared/benchmarks python benchmarks/bench_selection_study.py [variant ...]``.
Prints, per corpus and method, mean PearCorr, RelAcc and top-1 regret over problems x ratios and the
CPU seconds; the variants are declared in ``docs/SELECTION_STUDY.md`` before they run.
``... bench_selection_study.py table`` prints the closing table of issue 22: the default against AtS,
subtuning, successive halving (eta 2 and 4) and progressive at the protocol's budgets, with the
coverage and interval score of the default's intervals (scale calibrated without the corpus shown).
``intervals`` prints the coverage with the prior SCALE alone, C3's max(SCALE, own) and the engine's
(C6, shipped: the geometric mean where the user's own backtests ask for more); ``progressive_c3``
runs B1 (progressive with C3's intervals against successive halving); ``bootstrap`` prints CI1 (how far
LCDB dev's gaps to issue 22's bar are from noise).
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from lensllm_nb.analysis.published_curves import load
from lensllm_nb.analysis.curve_envelope import log_envelope
from lensllm_nb.analysis.curves import read_curves, validate_curves
from lensllm_nb.analysis.metrics import pearcorr, relacc, top1_regret
from lensllm_nb.analysis.multi_benchmark import run_benchmarks
from lensllm_nb.analysis.predict import SCALE, _center_and_spread, _fit_methods, _t2_ppf, calibrate_scale, log_predictive
from lensllm_nb.analysis.progressive import ProgressiveSelector
from lensllm_nb.analysis.selection import make_selector
from lensllm_nb.analysis.visible import visible_from_valid
from lensllm_nb.analysis.self_calibration import backtest_ratios
from lensllm_nb.analysis.successive_halving import SuccessiveHalvingSelector

LAST_ORIGIN_ONLY = "C4" in sys.argv[2:]  # intervals C4: the own multiplier from the largest origin only
ZOO = Path(__file__).resolve().parents[1] / "tests" / "data" / "zoo_v4_curves.csv"
# corpus -> (ratios, target or None for each dataset's largest size)
PROTOCOL = {"flan": ((8, 16, 32, 64, 128, 256, 512), None), "gigaword": ((8, 16, 32, 64, 128, 256, 512), None),
            "lcdb_dev": ((4, 8, 16, 32), None), "zoo": ((16, 32, 64), 2048), "zoo_corpus": ((8, 16, 32, 64), None)}
VARIANTS = {
    "subtuning": ("subtuning", {}), "ats": ("ats", {}), "curvature_drift": ("curvature_drift", {}),
    "P1": ("backtested_pick", {"origins": "half", "no_origin": "leader", "margin_test": False}),
    "P2": ("backtested_pick", {"origins": "half", "no_origin": "predicted", "margin_test": False}),
    "P3": ("backtested_pick", {"origins": "all", "no_origin": "leader", "margin_test": False}),
    "P4": ("backtested_pick", {"origins": "half", "no_origin": "leader", "margin_test": True}),
    "P5": ("backtested_pick", {"origins": "half", "no_origin": "leader", "margin_test": True, "short_lines": True}),
    "shipped": ("backtested_pick", {}),
    "before_PP3": ("backtested_pick", {"pair_pool": None}),  # the default until study PP3 shipped
    "T90": ("backtested_pick", {"departure_level": 0.90}),
    "T95": ("backtested_pick", {"departure_level": 0.95}),
    "NP1": ("backtested_pick", {"noise_margin": True}),
    "Q1": ("backtested_pick", {"envelope": True}),
    "A1": ("backtested_pick", {"origins": "all"}),
    "PP1": ("backtested_pick", {"pair_pool": "mean"}),
    "PP2": ("backtested_pick", {"pair_pool": "share"}),
    "PP3": ("backtested_pick", {"pair_pool": "veto"}),
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


def own_multiplier(visible, method="curvature_drift"):
    """C3: the multiplier the user's own points call for (the engine's backtests since C6 shipped);
    C4 (``LAST_ORIGIN_ONLY``): at the largest origin only."""
    ratios = backtest_ratios(visible, lambda cut: _center_and_spread(_fit_methods(cut, method), method))
    ratios = ratios[-1:] if LAST_ORIGIN_ONLY else ratios
    return float(np.median(np.concatenate(ratios)) / _t2_ppf(0.75)) if ratios else 0.0


def c3_predictive(visible, *, method="curvature_drift", scale=SCALE):
    """C3's predictive distribution: the engine's centre, scale max(``scale``, own multiplier) x spread."""
    return log_predictive(visible, method=method, scale=max(scale, own_multiplier(visible, method)),
                          self_calibrate=False)


def prior_predictive(visible, *, method="curvature_drift", scale=SCALE):
    """The engine before C6: scale ``scale`` x spread, no self-calibration."""
    return log_predictive(visible, method=method, scale=scale, self_calibrate=False)


PREDICTIVES = {"prior": prior_predictive, "C3": c3_predictive, "engine": log_predictive}


def coverage(prepared, scale, rule="engine"):
    """Coverage of the 90% and 80% intervals and the 90% interval score (log loss) at ``scale`` (a `PREDICTIVES` rule)."""
    inside90, inside80, score = [], [], []
    predictive = PREDICTIVES[rule]
    for visible, truth in prepared:
        center, width = predictive(visible, method="curvature_drift", scale=scale)
        floor, ceiling = log_envelope(visible)  # the engine's t is censored to it (study W)
        y = np.log(truth.reindex(visible.models).to_numpy())
        for level, inside in ((0.9, inside90), (0.8, inside80)):
            half = _t2_ppf(0.5 + level / 2) * width
            low, high = np.clip(center - half, floor, ceiling), np.clip(center + half, floor, ceiling)
            inside.extend((low <= y) & (y <= high))
            if level == 0.9:
                score.extend(high - low + 20 * (np.maximum(low - y, 0) + np.maximum(y - high, 0)))
    return np.mean(inside90), np.mean(inside80), np.mean(score)


def halving_eta4(df, ratios, target):
    """Mean RelAcc / regret of successive halving with eta 4 at the FLOPs the fixed methods spend."""
    from lensllm_nb.analysis.metrics import cost_fraction

    out = []
    for _, rows in df.groupby("dataset"):
        tgt = target or int(rows["n_train"].max())
        truth = rows[rows["n_train"] == tgt].groupby("model")["test_loss"].mean()
        below = rows[rows["n_train"] < tgt]
        pool = visible_from_valid(below, max_train=tgt - 1, target=tgt)
        for ratio in ratios:
            if min(int((s <= tgt // ratio).sum()) for s in pool.sizes) < 3:
                continue
            budget = cost_fraction(rows[rows["n_train"] <= tgt // ratio], max_train=tgt // ratio, target=tgt)
            sel = SuccessiveHalvingSelector(eta=4).fit_pool(pool, below, target=tgt, budget=budget)
            out.append((relacc(truth[sel.chosen_], truth.to_numpy()), top1_regret(truth[sel.chosen_], truth.to_numpy())))
    return np.mean(out, axis=0)


def table():
    """The closing table: every corpus, the default against the baselines, and its coverage."""
    warnings.simplefilter("ignore", UserWarning)
    scales = {}
    for name in ("flan", "gigaword"):
        ratios, target = PROTOCOL[name]
        cases_ = [(v, t.reindex(v.models).to_numpy()) for v, t in cases(corpus(name), ratios, target)]
        scales[name] = calibrate_scale(cases_, method="curvature_drift")
    # Each corpus is shown with a scale calibrated without it: FLAN with Gigaword's, the others with FLAN's.
    shown_with = {"flan": ("gigaword", scales["gigaword"]), "gigaword": ("flan", SCALE),
                  "lcdb_dev": ("flan", SCALE), "zoo": ("flan", SCALE), "zoo_corpus": ("flan", SCALE)}
    print(f"calibrated scales: FLAN {scales['flan']:.3f} (shipped SCALE {SCALE}), Gigaword {scales['gigaword']:.3f}")
    methods = ["backtested_pick", "ats", "subtuning", "successive_halving", "progressive"]
    for name, (ratios, target) in PROTOCOL.items():
        start = time.process_time()
        df = corpus(name)
        res = run_benchmarks(df, methods=methods, ratios=ratios, target=target)
        print(f"\n{name} ({time.process_time() - start:.1f} s CPU)")
        print(res.summary.round(4).to_string(index=False))
        rel4, reg4 = halving_eta4(df, ratios, target)
        print(f"successive_halving eta 4: relacc {rel4:.4f} regret {reg4:.4f}")
        cov90, cov80, score = coverage(list(cases(df, ratios, target)), shown_with[name][1])
        print(f"default intervals (scale from {shown_with[name][0]}): 90% covers {cov90:.3f}, 80% covers "
              f"{cov80:.3f}, interval score (90%) {score:.3f}", flush=True)


def intervals():
    """Every corpus's coverage with the prior alone, C3's max(SCALE, own) and the engine's C6 blend."""
    warnings.simplefilter("ignore", UserWarning)
    prepared = {name: list(cases(corpus(name), *PROTOCOL[name])) for name in PROTOCOL}
    scales = {name: calibrate_scale([(v, t.reindex(v.models).to_numpy()) for v, t in prepared[name]],
                                    method="curvature_drift") for name in ("flan", "gigaword")}
    shown_with = {"flan": "gigaword", "gigaword": "flan", "lcdb_dev": "flan", "zoo": "flan", "zoo_corpus": "flan"}
    for rule in PREDICTIVES:
        for name, source in shown_with.items():
            cov90, cov80, score = coverage(prepared[name], scales[source], rule)
            print(f"  {name:10s} {rule:6s} (prior {source} {scales[source]:.3f}): 90% {cov90:.3f} 80% {cov80:.3f} "
                  f"IS {score:.3f}", flush=True)


def progressive_c3():
    """B1: progressive and successive halving with C3's intervals in progressive's rounds."""
    from lensllm_nb.analysis import progressive

    warnings.simplefilter("ignore", UserWarning)
    progressive.log_predictive = c3_predictive
    for name, (ratios, target) in PROTOCOL.items():
        res = run_benchmarks(corpus(name), methods=["progressive", "successive_halving"], ratios=ratios, target=target)
        print(name); print(res.summary.round(4).to_string(index=False), flush=True)


class _FlatteningHalving(ProgressiveSelector):
    """G1: ``progressive`` that halves by measured loss after its start points where their shared slope growth
    is <= 0 (the shipped halving of study G3, behind G1's gate)."""

    def _halving_gate(self, start):
        from lensllm_nb.analysis.statespace import fit_slope_drift

        rho = fit_slope_drift([np.log(s) for s in start.sizes], [np.log(l) for l in start.losses]).rho
        return rho <= 0, f"rho {rho:.3f} <= 0"


class _AlwaysHalving(ProgressiveSelector):
    """G0: ``progressive`` that halves after its start points on every case (the ceiling of any such gate)."""

    def _halving_gate(self, start):
        return True, "always"


@contextlib.contextmanager
def _progressive_as(factory):
    """Inside the block, the benchmark protocol's ``progressive`` is built by ``factory()``."""
    from lensllm_nb.analysis import protocol

    shipped = protocol.ProgressiveSelector
    protocol.ProgressiveSelector = factory
    try:
        yield
    finally:
        protocol.ProgressiveSelector = shipped


def _progressive_against(factory, label):
    """On every corpus: the shipped ``progressive`` and successive halving, then ``factory``'s ``progressive``."""
    warnings.simplefilter("ignore", UserWarning)
    for name, (ratios, target) in PROTOCOL.items():
        df = corpus(name)
        res = run_benchmarks(df, methods=["progressive", "successive_halving"], ratios=ratios, target=target)
        with _progressive_as(factory):
            variant = run_benchmarks(df, methods=["progressive"], ratios=ratios, target=target)
        print(f"\n{name}\n{res.summary.round(4).to_string(index=False)}\n{label}:\n"
              f"{variant.summary.round(4).to_string(index=False)}", flush=True)


def progressive_g1():
    """G1: progressive with the flattening gate, against today's progressive and successive halving."""
    _progressive_against(_FlatteningHalving, "G1")


def progressive_g3():
    """G3 (shipped): today's progressive against the rounds it ran before, where the start points' gaps persisted."""
    _progressive_against(lambda **kw: ProgressiveSelector(persisting_gaps="rounds", **kw), "before G3 (rounds)")


def progressive_g0():
    """G0: progressive that always halves after its start points (reported only)."""
    _progressive_against(_AlwaysHalving, "G0")


def progressive_g2():
    """G2: progressive buying the next size for the contenders it can pay when it cannot pay every survivor."""
    warnings.simplefilter("ignore", UserWarning)
    for name, (ratios, target) in PROTOCOL.items():
        with _progressive_as(lambda: ProgressiveSelector(remainder="contenders")):
            res = run_benchmarks(corpus(name), methods=["progressive"], ratios=ratios, target=target)
        print(f"\n{name} G2:\n{res.summary.round(4).to_string(index=False)}", flush=True)


class _HalvingStart:
    """SS1: ``progressive`` whose start points end at successive halving's starting size for the budget."""

    def __new__(cls, **kwargs):
        import dataclasses

        from lensllm_nb.analysis import progressive
        from lensllm_nb.analysis.budgeted import cost_lookup
        from lensllm_nb.analysis.metrics import full_data_flops
        from lensllm_nb.analysis.successive_halving import halving_ladder

        class SS1(progressive.ProgressiveSelector):
            def fit_pool(self, pool, rows, *, target, budget=None):
                cost_of, total = cost_lookup(rows), full_data_flops(rows, target=target)
                limit = self._budget(budget) * total
                starts = sorted({float(s) for sizes in pool.sizes for s in sizes})
                fits = [s for s in starts if (lambda r: r[0] is not None and r[1] <= limit)(
                    halving_ladder(pool, s, 2, cost_of))]
                s0 = fits[-1] if fits else starts[0]
                ladder = progressive._doubling_ladder(pool)
                k = self.start_points
                ends = [max(int(np.sum(s <= s0)) - 1, k - 1) for s in ladder.sizes]
                while True:
                    cost = sum(cost_of(m, s) for m, sizes, e in zip(ladder.models, ladder.sizes, ends)
                               for s in sizes[e - k + 1:e + 1])
                    if cost <= limit or min(ends) <= k - 1:
                        break
                    ends = [max(e - 1, k - 1) for e in ends]
                first = [e - k + 1 for e in ends]
                thinned = dataclasses.replace(
                    ladder, sizes=[s[f:] for s, f in zip(ladder.sizes, first)],
                    losses=[l[f:] for l, f in zip(ladder.losses, first)],
                    steps=None if ladder.steps is None else [t[f:] for t, f in zip(ladder.steps, first)])
                return super().fit_pool(thinned, rows, target=target, budget=budget)

        return SS1(**kwargs)


def progressive_ss1():
    """SS1: progressive starting at successive halving's rung, against today's progressive and successive halving."""
    _progressive_against(_HalvingStart, "SS1")


R1_RISKS = (0.02, 0.05, 0.10, 0.20)


def progressive_r1():
    """R1: progressive at each risk of `R1_RISKS`; the value is chosen on LCDB dev alone (docs/SELECTION_STUDY.md)."""
    warnings.simplefilter("ignore", UserWarning)
    for name in ("lcdb_dev", "flan", "gigaword", "zoo", "zoo_corpus"):
        ratios, target = PROTOCOL[name]
        df = corpus(name)
        for risk in (0.01, *R1_RISKS):
            with _progressive_as(lambda risk=risk: ProgressiveSelector(risk=risk)):
                res = run_benchmarks(df, methods=["progressive"], ratios=ratios, target=target)
            row = res.summary.iloc[0]
            print(f"{name:10s} risk {risk:.2f}: relacc {row['relacc']:.4f} regret {row['regret']:.4f} "
                  f"pearson {row['pearson']:.4f}", flush=True)


def has_origin(view):
    """Whether a backtest origin (s_o <= s_k / 2 with 3 points of every candidate) exists."""
    s_k = max(s[-1] for s in view.sizes)
    return min(int(np.sum(s <= s_k / 2)) for s in view.sizes) >= 3


def progressive_b3(variant="B3"):
    """B3: progressive drops by measured loss (worse half) in rounds where C3's multiplier exceeds SCALE;
    B2: in rounds without a backtest origin."""
    from lensllm_nb.analysis import progressive

    warnings.simplefilter("ignore", UserWarning)
    state = {}

    def predictive(view, *, method):
        if variant == "B2":
            state["measured"] = not has_origin(view)
        else:
            ready = min(s.size for s in view.sizes) >= progressive.ProgressiveSelector().drop_from
            state["measured"] = ready and own_multiplier(view, method) > SCALE
        state["last"] = np.array([l[-1] for l in view.losses])
        return log_predictive(view, method=method)

    def drop_rule(pb, risk, min_keep):
        if not (state["measured"] and (risk > 0 or variant == "B2")):
            return unlikely_best(pb, risk, min_keep)
        keep = max(int(np.ceil(pb.size / 2)), min_keep)
        drop = np.zeros(pb.size, dtype=bool)
        drop[np.argsort(state["last"], kind="stable")[keep:]] = True
        return drop

    unlikely_best = progressive._unlikely_best
    progressive.log_predictive, progressive._unlikely_best = predictive, drop_rule
    for name, (ratios, target) in PROTOCOL.items():
        res = run_benchmarks(corpus(name), methods=["progressive"], ratios=ratios, target=target)
        print(name, variant); print(res.summary.round(4).to_string(index=False), flush=True)


def _problem_means(results, method, baseline, metric):
    """Per dataset, the mean over its ratios of ``method``'s ``metric`` minus ``baseline``'s."""
    wide = results.pivot_table(index=["dataset", "ratio"], columns="method", values=metric)
    return (wide[method] - wide[baseline]).groupby(level="dataset").mean().to_numpy()


def bootstrap(n_resamples=10_000, seed=0):
    """CI1: on LCDB dev, the cluster-bootstrap 95% interval (over problems) of default - subtuning and of
    progressive - successive halving, in RelAcc and regret, with the counts of problems better / equal / worse."""
    warnings.simplefilter("ignore", UserWarning)
    ratios, target = PROTOCOL["lcdb_dev"]
    res = run_benchmarks(corpus("lcdb_dev"), methods=["backtested_pick", "subtuning", "progressive",
                                                      "successive_halving"], ratios=ratios, target=target)
    rng = np.random.default_rng(seed)
    for method, baseline in (("backtested_pick", "subtuning"), ("progressive", "successive_halving")):
        for metric in ("relacc", "regret"):
            diff = _problem_means(res.results, method, baseline, metric)
            draws = rng.integers(0, diff.size, size=(n_resamples, diff.size))
            low, high = np.percentile(diff[draws].mean(axis=1), [2.5, 97.5])
            moved = np.abs(diff) > 1e-12
            better = moved & ((diff < 0) if metric == "regret" else (diff > 0))
            print(f"{method} - {baseline} {metric}: mean {diff.mean():+.4f}, 95% [{low:+.4f}, {high:+.4f}] over "
                  f"{diff.size} problems; better in {int(better.sum())}, equal in {int((~moved).sum())}, "
                  f"worse in {int((moved & ~better).sum())}", flush=True)


COMMANDS = {"progressive_g0": progressive_g0, "progressive_g1": progressive_g1, "progressive_g2": progressive_g2,
            "progressive_g3": progressive_g3, "progressive_ss1": progressive_ss1, "progressive_r1": progressive_r1,
            "progressive_c3": progressive_c3, "table": table,
            "bootstrap": bootstrap}

if __name__ == "__main__":
    if sys.argv[1:2] == ["intervals"]:
        intervals()
    elif sys.argv[1:2] == ["progressive_b3"]:
        progressive_b3(*sys.argv[2:])
    elif len(sys.argv) == 2 and sys.argv[1] in COMMANDS:
        COMMANDS[sys.argv[1]]()
    else:
        main(sys.argv[1:] or list(VARIANTS))
