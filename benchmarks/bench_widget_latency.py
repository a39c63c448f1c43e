"""Latency of the comparison widget as a user sees it, in JupyterLab driven by Chromium.

Opens notebook 03 on a 30-model benchmark set in a private JupyterLab (the harness of
``tests/browser``), runs all cells from the Run menu, then moves the budget slider one
step at a time with the keyboard and times each change from the key press until the
figure and the table on screen have both been replaced (goal ≤ 1 s for 30 models).
The figures go into the "Widget in the browser" section of ``docs/BENCHMARKS.md``
(``--write``), with the command, machine and date.

Usage::

    LENSLLM_NB_DATA=../shared/benchmarks .venv/bin/python benchmarks/bench_widget_latency.py [--changes 8] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_harness import (JupyterLab, budget_readout, lab_errors, lab_open_notebook,  # noqa: E402
                             lab_run_all, launch_chromium, missing_requirements, move_budget, open_page,
                             prepare_notebook, wait_for_new_output, widget_cell, widget_snapshot)

GOAL_S = 1.0
SECTION = "## Widget in the browser"
MACHINE = "2-core CPU sandbox"


def _measure(page, lab, root, name, changes) -> dict:
    """Run notebook 03 on benchmark set `name`; time `changes` budget-slider moves."""
    notebook = f"03_{name}.ipynb"
    prepare_notebook(ROOT / "notebooks" / "03_select_models.ipynb", root / notebook,
                     {"store": "", "curves": name, "methods": ["subtuning", "ats", "lensllm"],
                      "widget_mode": "live"})
    lab_open_notebook(page, lab, notebook)
    lab_run_all(page, timeout_s=300)
    cell = widget_cell(page)
    cell.locator("img").first.wait_for(timeout=60_000)
    # One way along the slider, turning at its end: the first visit of each budget is a
    # real refit; a budget seen before may be served from a cache, so it is counted apart.
    first, repeat, seen, key = [], [], {budget_readout(cell)}, "ArrowRight"
    for _ in range(changes):
        before = widget_snapshot(cell)
        key = move_budget(cell, key)
        seconds = wait_for_new_output(cell, before)
        budget = budget_readout(cell)
        (repeat if budget in seen else first).append(seconds)
        seen.add(budget)
    problems = lab_errors(page)
    if problems:
        raise SystemExit(f"notebook 03 on {name} shows errors:\n" + "\n".join(problems))
    lab.shutdown_kernels()
    from lensllm_nb.analysis import published_curves as benchmarks

    models = benchmarks.load(name)["model"].nunique()
    return {"set": name, "models": models, "changes": len(first), "median": statistics.median(first),
            "max": max(first), "repeats": len(repeat),
            "repeat_median": statistics.median(repeat) if repeat else float("nan"), "budgets": sorted(seen, key=int),
            "times": [round(t, 2) for t in first + repeat]}


def _section(rows, command, *, load_start, chromium) -> str:
    import ipywidgets
    import jupyterlab

    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        "Time from moving the budget slider of notebook 03's comparison widget (keyboard, one step)",
        "until the new figure and table are both on screen, in JupyterLab driven by headless Chromium",
        f"(Playwright). Goal: ≤ {GOAL_S:g} s for 30 models.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {MACHINE}, shared with other jobs (load average {load_start:.1f} at the start, "
        f"{load:.1f} at the end); Python {platform.python_version()}, JupyterLab {jupyterlab.__version__}, "
        f"ipywidgets {ipywidgets.__version__}, Chromium {chromium}",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%a %b %d %H:%M UTC %Y}",
        "",
        "*new budget*: the first visit of a budget (a refit); *revisited*: a budget shown before.",
        "",
        "| set | models | new budgets | median | max | goal met | revisited | median |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        met = "yes" if row["max"] <= GOAL_S else ("median only" if row["median"] <= GOAL_S else "no")
        lines.append(f"| {row['set']} | {row['models']} | {row['changes']} | {row['median']:.2f} s | "
                     f"{row['max']:.2f} s | {met} | {row['repeats']} | {row['repeat_median']:.2f} s |")
    return "\n".join(lines) + "\n"


def _write(section, path) -> None:
    """Replace the section in `path` (or append it), leaving the other sections alone."""
    text = path.read_text(encoding="utf-8")
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["flan", "gigaword"])
    parser.add_argument("--changes", type=int, default=8, help="slider moves timed per set")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    reason = missing_requirements()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    from playwright.sync_api import sync_playwright

    rows, load_start = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        root, work = Path(tmp) / "root", Path(tmp) / "server"
        root.mkdir()
        browser = launch_chromium(playwright)
        chromium = browser.version
        try:
            with JupyterLab(root, work, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) as lab:
                page, _ = open_page(browser, f"http://127.0.0.1:{lab.port}/")
                for name in args.sets:
                    row = _measure(page, lab, root, name, args.changes)
                    rows.append(row)
                    print(f"{name}: {row['models']} models, {row['changes']} new budgets, median "
                          f"{row['median']:.2f} s, max {row['max']:.2f} s; {row['repeats']} revisited, "
                          f"median {row['repeat_median']:.2f} s (budgets {row['budgets']}; seconds {row['times']})")
        finally:
            browser.close()
    command = "LENSLLM_NB_DATA=../shared/benchmarks .venv/bin/python benchmarks/bench_widget_latency.py " + \
        " ".join(sys.argv[1:])
    section = _section(rows, command.strip(), load_start=load_start, chromium=chromium)
    print(section)
    if args.write:
        _write(section, ROOT / "docs" / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
