"""Time of one change of the comparison widget on the 30-model benchmark sets.

Moves the budget slider through the visible sizes ≥ 800 and times each change
(every setting is new, so nothing comes from the widget's cache):

* ``predict`` — the prediction engine (default method, intervals, p_best) and
  the ranking table: the widget's refit (goal ≤ 0.3 s for 30 models);
* ``draw`` — the Python-side redraw: the figure on reused axes, rendered to PNG;
* ``update`` — the whole change as the Python side sees it (predict, draw,
  outputs replaced); the browser adds the PNG transfer and display;
* ``update CPU`` — the CPU time of that change (one thread), which a busy shared
  machine inflates far less than the wall-clock time;
* ``old draw CPU`` — for comparison in the same run, the CPU time of the drawing of
  the widget before issue 7 (30 fitted law curves on a new figure, tight bounding
  box, 80 dpi).

Usage::

    LENSLLM_NB_DATA=../shared/benchmarks .venv/bin/python benchmarks/bench_widget_refit.py
"""

from __future__ import annotations

import io
import statistics
import time

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402

from lensllm_nb.analysis import published_curves as benchmarks  # noqa: E402
from lensllm_nb.analysis.curve_fits import fit_curves  # noqa: E402
from lensllm_nb.analysis.predict import predict_candidates  # noqa: E402
from lensllm_nb.workflow.plots import plot_curves  # noqa: E402
from lensllm_nb.workflow.tables import ranking_table  # noqa: E402
from lensllm_nb.workflow.widgets import ComparisonWidget  # noqa: E402

GOAL_REFIT_S = 0.3
GOAL_CHANGE_S = 1.0


def _cpu(action) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def _old_draw(table, budget, target) -> float:
    """CPU seconds of the pre-issue-7 drawing: every law curve on a new figure."""
    fit = fit_curves(table, "lensllm", max_train=budget)
    started = time.process_time()
    ax = plot_curves(table, fit, max_train=budget, target=target, phase=True, interval=None)
    ax.figure.savefig(io.BytesIO(), format="png", dpi=80, bbox_inches="tight")
    plt.close(ax.figure)
    return time.process_time() - started


def bench(name):
    """Return a dict of medians (seconds) and the PNG size for one set."""
    table = benchmarks.load(name)
    widget = ComparisonWidget(table, mode="static")
    target = widget.target.value
    budgets = [b for b in widget.budget.options if 800 <= b < target and b != widget.budget.value]
    predict, draw, update, cpu, old, predict_cpu, draw_cpu = [], [], [], [], [], [], []
    for budget in budgets:
        started, cpu_started = time.perf_counter(), time.process_time()
        widget.budget.value = budget
        update.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        predict.append(widget.timings_["predict"])
        draw.append(widget.timings_["draw"])
        predict_cpu.append(_cpu(lambda: ranking_table(predict_candidates(table, max_train=budget, target=target))))
        draw_cpu.append(_cpu(widget._draw))
        old.append(_old_draw(table, budget, target))
    return {"models": table["model"].nunique(), "changes": len(budgets),
            "predict": statistics.median(predict), "predict_max": max(predict),
            "draw": statistics.median(draw), "update": statistics.median(update),
            "update_cpu": statistics.median(cpu), "predict_cpu": statistics.median(predict_cpu),
            "draw_cpu": statistics.median(draw_cpu),
            "old_draw": statistics.median(old), "png_kb": len(widget.png_) / 1024}


def main() -> None:
    print(f"goals: refit (predict) ≤ {GOAL_REFIT_S} s; whole change in a browser ≤ {GOAL_CHANGE_S} s")
    print("medians over the changes; wall-clock seconds except the CPU columns (one thread: CPU time is the")
    print("work itself, wall time also counts waiting for other processes on a shared machine)")
    header = ["set", "models", "changes", "predict", "predict max", "draw", "update", "predict CPU",
              "draw CPU", "update CPU", "old draw CPU", "PNG KiB"]
    print("".join(f"{h:>13}" for h in header))
    for name in ("flan", "gigaword"):
        r = bench(name)
        print(f"{name:>13}{r['models']:>13}{r['changes']:>13}" + "".join(
            f"{r[k]:>12.3f}s" for k in ("predict", "predict_max", "draw", "update", "predict_cpu", "draw_cpu",
                                        "update_cpu", "old_draw")) + f"{r['png_kb']:>13.0f}")


if __name__ == "__main__":
    main()
