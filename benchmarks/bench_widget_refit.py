"""Refit time of the comparison widget on the 30-model benchmark sets.

Moves the budget slider through every visible size and times each change:
``refit`` is the vectorized fit of all selected curves plus the ranking table
(goal ≤ 0.3 s for 30 models), ``update`` the whole change as a user sees it
(refit, cost fraction, figure rendered to PNG, outputs replaced).

Usage::

    LENSLLM_NB_DATA=../shared/benchmarks .venv/bin/python benchmarks/bench_widget_refit.py [--law lensllm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import matplotlib

matplotlib.use("agg")

from lensllm_nb import benchmarks  # noqa: E402
from lensllm_nb.curve_fits import fit_curves  # noqa: E402
from lensllm_nb.widgets import ComparisonWidget, _ranking  # noqa: E402

GOAL_S = 0.3


def _time(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bench(name, law):
    """Return (models, changes, median refit s, max refit s, median update s)."""
    table = benchmarks.load(name)
    widget = ComparisonWidget(table, law=law, mode="static")
    target = widget.target.value
    budgets = [b for b in widget.budget.options if b >= 800]
    refits, updates = [], []
    for budget in budgets:
        def refit():
            fit = fit_curves(table, law, max_train=budget)
            _ranking(table, fit, target)
        refits.append(_time(refit))
        updates.append(_time(lambda: setattr(widget.budget, "value", budget)))
    return table["model"].nunique(), len(budgets), statistics.median(refits), max(refits), statistics.median(updates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--law", default="lensllm", choices=("lensllm", "rectified", "vanilla"))
    args = parser.parse_args()
    print(f"law: {args.law}; goal: refit ≤ {GOAL_S} s")
    print(f"{'set':<10}{'models':>7}{'changes':>9}{'refit median':>14}{'refit max':>11}{'update median':>15}")
    for name in ("flan", "gigaword"):
        models, changes, median, worst, update = bench(name, args.law)
        print(f"{name:<10}{models:>7}{changes:>9}{median:>13.3f}s{worst:>10.3f}s{update:>14.3f}s")


if __name__ == "__main__":
    main()
