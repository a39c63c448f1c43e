"""The notebooks in JupyterLab, driven by Chromium as a user would: kernel, widgets, progress.

Assertions are about what a user sees (controls, figure, table text, error text),
not about Python objects, so they hold whatever the widget's code looks like.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from browser_harness import (ROOT, budget_readout, lab_current_notebook, lab_errors, lab_open_notebook,
                             lab_run_all, lab_wait_kernel_idle, move_budget, prepare_notebook,
                             wait_for_new_output, widget_cell, widget_snapshot)

KERNEL_NAME = "lensllm-nb"
KERNEL_DISPLAY_NAME = "Python (lensllm-nb)"
ZOO_MODEL = "zoo/gpt2-tiny"


@pytest.fixture(scope="module")
def curves_file(lab_root):
    """Both benchmark sets in one tidy file, so the widget has two datasets to switch between."""
    from lensllm_nb.analysis import published_curves as benchmarks

    path = lab_root / "flan_and_gigaword.csv"
    pd.concat([benchmarks.load("flan"), benchmarks.load("gigaword")], ignore_index=True).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def notebook_03_file(lab_root, curves_file):
    """Notebook 03 with parameters for the 30 benchmark models of FLAN (Gigaword in the same file)."""
    return prepare_notebook(ROOT / "notebooks" / "03_select_models.ipynb", lab_root / "03.ipynb",
                            {"store": "", "curves": str(curves_file), "dataset": "flan",
                             "methods": ["subtuning", "ats", "lensllm"], "widget_mode": "live"})


@pytest.fixture(scope="module")
def notebook_03(lab, lab_page, notebook_03_file):
    """Notebook 03, all cells run from the Run menu (opened here unless already open)."""
    page = lab_page.page
    if lab_current_notebook(page) != notebook_03_file.name:
        lab_open_notebook(page, lab, notebook_03_file.name)
    lab_run_all(page, timeout_s=240)
    cell = widget_cell(page)
    cell.locator("img").first.wait_for(timeout=30_000)
    return page, cell


def test_kernel_is_offered_and_selected_without_a_dialog(lab, lab_page, notebook_03_file):
    specs = lab.api("GET", "/api/kernelspecs")["kernelspecs"]
    assert KERNEL_NAME in specs, f"JupyterLab offers only {sorted(specs)}; run `make kernel`"
    assert specs[KERNEL_NAME]["spec"]["display_name"] == KERNEL_DISPLAY_NAME
    page = lab_page.page
    page.goto(lab.url("lab") + "&reset")
    card = page.locator(".jp-LauncherCard", has_text=KERNEL_DISPLAY_NAME)
    card.first.wait_for(timeout=60_000)
    assert card.count() >= 1, f"the launcher has no {KERNEL_DISPLAY_NAME!r} card"
    # Open the notebook as a user does: double-click it in the file browser.
    page.locator(".jp-DirListing-item", has_text=notebook_03_file.name).first.dblclick()
    lab_wait_kernel_idle(page)
    dialogs = page.locator(".jp-Dialog")
    assert dialogs.count() == 0, f"opening the notebook asked: {dialogs.first.inner_text()}"
    shown = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName").inner_text()
    assert shown.strip() == KERNEL_DISPLAY_NAME
    assert KERNEL_NAME in {kernel["name"] for kernel in lab.kernels()}


def test_03_runs_and_the_comparison_widget_shows_live_controls(notebook_03, lab_page):
    page, cell = notebook_03
    problems = lab_errors(page)
    assert not problems, "notebook 03 shows:\n" + "\n".join(problems)
    assert cell.count() == 1, "no cell shows a slider labelled 'budget' (the comparison widget's controls)"
    assert cell.locator(".widget-slider").first.is_visible()
    assert cell.locator(".widget-dropdown select").count() >= 1, "the widget shows no drop-down control"
    shot = widget_snapshot(cell)
    assert shot["images"] and shot["tables"], "the widget shows no figure or no table"
    assert not [text for text in lab_page.problems["console"] if "widget" in text.lower()], lab_page.problems


def test_03_budget_slider_redraws_figure_and_table(notebook_03, tmp_path):
    _, cell = notebook_03
    cell.screenshot(path=str(tmp_path / "widget-before.png"))
    before, old = widget_snapshot(cell), budget_readout(cell)
    move_budget(cell, "ArrowRight")
    try:
        wait_for_new_output(cell, before)
    except AssertionError as exc:
        raise AssertionError(f"moving the budget slider from {old} to {budget_readout(cell)}: {exc}") from None
    assert budget_readout(cell) != old
    cell.screenshot(path=str(tmp_path / "widget-after.png"))
    problems = lab_errors(cell)
    assert not problems, "after moving the budget slider the widget shows:\n" + "\n".join(problems)


def test_03_dataset_change_redraws_figure_and_table(notebook_03):
    _, cell = notebook_03
    select = cell.locator(".widget-dropdown", has=cell.page.locator("label", has_text="dataset")).locator("select")
    assert select.count() == 1, "the widget has no drop-down labelled 'dataset'"
    options = select.locator("option").all_inner_texts()
    current = select.evaluate("s => s.options[s.selectedIndex].text")
    others = [option for option in options if option != current]
    assert others, f"the dataset drop-down offers only {options}; a user cannot switch datasets"
    before = widget_snapshot(cell)
    select.select_option(label=others[0])
    try:
        wait_for_new_output(cell, before)
    except AssertionError as exc:
        raise AssertionError(f"changing the dataset from {current} to {others[0]}: {exc}") from None
    problems = lab_errors(cell)
    assert not problems, "after changing the dataset the widget shows:\n" + "\n".join(problems)


def test_01_progress_bars_are_live_widgets_and_the_run_finishes(lab, lab_page, lab_root, tmp_path):
    prepare_notebook(ROOT / "notebooks" / "01_finetune_subsets.ipynb", lab_root / "01.ipynb",
                     {"model": ZOO_MODEL, "dataset": "zoo", "sizes": [0, 16], "full_sizes": [], "seeds": [0],
                      "epochs": 1, "ntk_probe": 0, "progress": True, "store": str(lab_root / "results.db")})
    page = lab_page.page
    lab.shutdown_kernels()  # notebook 03's, if it ran: the two cores are for this one
    lab_open_notebook(page, lab, "01.ipynb")
    lab_run_all(page, timeout_s=300)
    page.screenshot(path=str(tmp_path / "notebook-01.png"))
    problems = lab_errors(page)
    assert not problems, "notebook 01 shows:\n" + "\n".join(problems)
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea")
    # tqdm's notebook bar: a box with the description, a progress widget and the count.
    bar = outputs.locator(".widget-hbox", has=page.locator(".widget-hprogress")).filter(has_text=ZOO_MODEL)
    assert bar.count() >= 1 and bar.first.is_visible(), "notebook 01 shows no progress bar for its runs"
    text = "\n".join(outputs.all_inner_texts())
    # A front end that cannot render widgets shows their text form instead.
    assert "HBox(children" not in text and "IntProgress(" not in text, text[-500:]
    shown = bar.first.inner_text()
    assert re.search(r"\b(\d+)/\1\b", shown), f"the progress bar does not show all runs done: {shown!r}"
    assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) img").count() >= 1, "the curve is not plotted"
