"""The shared HTML reports of a small batch run, opened offline in Chromium.

Every request that is not ``file:`` is blocked, as on a machine without network:
a report must render from its own file (images embedded, no CDN scripts).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from browser_harness import ROOT, WIDGET_ERROR_TEXTS, open_page

FLAN_MODELS = ["gpt2", "gpt2-medium", "facebook/opt-350m", "t5-base", "MBZUAI/LaMini-GPT-124M",
               "cerebras/Cerebras-GPT-111M"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, batch_env):
    """A small batch run: one tiny fine-tune grid (progress widgets) and a selection on FLAN."""
    from lensllm_nb.workflow.batch import run_batch

    out = tmp_path_factory.mktemp("batch")
    grid = {
        "name": "browser-tests",
        "root": str(ROOT),
        "timeout": 600,
        "env": batch_env,
        "parameters": {"store": "{out}/results.db"},
        "jobs": [
            {"notebook": "notebooks/01_finetune_subsets.ipynb", "stage": 1,
             "parameters": {"model": "zoo/gpt2-tiny", "dataset": "zoo", "sizes": [0, 16], "full_sizes": [],
                            "epochs": 1, "ntk_probe": 0}},
            {"notebook": "notebooks/03_select_models.ipynb", "stage": 1,
             "parameters": {"store": "", "curves": "flan", "models": FLAN_MODELS, "max_train": 12800,
                            "methods": ["subtuning", "ats", "lensllm"]}},
        ],
    }
    result = run_batch(grid, out=out, workers=2, log=None)
    failed = {item["name"]: item["error"] for item in result.results if item["status"] != "ok"}
    assert not failed, f"the batch run failed: {failed}"
    return result


@pytest.fixture(scope="module")
def offline_page(chromium):
    """A page that may load only file: URLs."""
    page, problems = open_page(chromium, "file:")
    yield page, problems
    page.context.close()


def _visit(page, problems, path, shots) -> list:
    """Open `path`; return what is wrong with it as a user would see it."""
    problems["console"].clear()
    problems["failed"].clear()
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(500)  # scripts run on load may still log errors or start requests
    found = [f"console error: {text}" for text in problems["console"]]
    found += [f"failed request: {text}" for text in problems["failed"]]
    broken = page.evaluate(
        "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => (i.alt || i.src).slice(0, 80))")
    found += [f"image not decoded: {src}" for src in broken]
    text = page.inner_text("body")
    found += [f"the page shows {marker!r}" for marker in WIDGET_ERROR_TEXTS if marker in text]
    shot = shots / f"{path.stem}.png"
    page.screenshot(path=str(shot), full_page=True)
    return [f"{path.name}: {item} (screenshot: {shot})" for item in found]


def test_every_report_renders_offline(batch, offline_page, tmp_path):
    page, problems = offline_page
    reports = sorted((batch.out / "reports").glob("*.html"))
    assert len(reports) == 2, f"expected one report per notebook, found {[p.name for p in reports]}"
    found = []
    for path in reports:
        found += _visit(page, problems, path, tmp_path)
        assert page.locator("img").count() >= 1, f"{path.name} shows no figure (screenshot: {tmp_path})"
    assert not found, "\n".join(found)


def test_index_renders_offline_and_its_links_resolve(batch, offline_page, tmp_path):
    page, problems = offline_page
    found = _visit(page, problems, batch.index, tmp_path)
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    assert hrefs, f"the index links nothing (screenshot: {tmp_path / 'index.png'})"
    for href in hrefs:
        url = urlparse(href)
        if url.scheme != "file":
            found.append(f"index.html links outside the report folder: {href}")
        elif not Path(unquote(url.path)).is_file():
            found.append(f"index.html links {href}, which does not exist")
    reports = {Path(unquote(urlparse(href).path)).name for href in hrefs}
    missing = sorted(p.name for p in (batch.out / "reports").glob("*.html") if p.name not in reports)
    assert not missing, f"the index does not link the reports {missing}"
    assert not found, "\n".join(found)


def test_no_page_scrolls_sideways_on_a_phone_width_screen(batch, offline_page, tmp_path):
    """At 420 px a wide table scrolls inside its own box; the page itself never does."""
    page, _ = offline_page
    page.set_viewport_size({"width": 420, "height": 900})
    try:
        wide = {}
        for path in [batch.index, *sorted((batch.out / "reports").glob("*.html"))]:
            page.goto(path.as_uri(), wait_until="load")
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 420:
                page.screenshot(path=str(tmp_path / f"{path.stem}-420.png"), full_page=True)
                wide[path.name] = width
        assert not wide, f"pages wider than a 420 px screen: {wide} (screenshots: {tmp_path})"
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})  # open_page's default


def test_a_report_header_with_long_paths_fits_a_phone_width_screen(offline_page, tmp_path):
    """A checkout deep in the file system: the header's path, job and error wrap, whatever the path."""
    import nbformat

    from lensllm_nb.workflow.report import render_report

    deep = "/" + "/".join(["a-checkout-folder-of-the-continuous-integration-machine"] * 3)
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"input_path": f"{deep}/notebooks/01_finetune_subsets.ipynb",
                                "end_time": "2026-01-01T00:00:00", "parameters": {"store": f"{deep}/results.db"}}
    nb.metadata["lensllm_nb"] = {"status": "failed", "job": "01_finetune_subsets__" + "x" * 80,
                                 "error": f"FileNotFoundError: {deep}/results.db"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A report")]
    nbformat.write(nb, tmp_path / "deep.ipynb")
    html = render_report(tmp_path / "deep.ipynb", tmp_path / "deep.html")
    page, _ = offline_page
    page.set_viewport_size({"width": 420, "height": 900})
    try:
        page.goto(html.as_uri(), wait_until="load")
        assert deep in page.inner_text("header")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 420:
            page.screenshot(path=str(tmp_path / "deep-420.png"), full_page=True)
        assert width <= 420, f"the report is {width} px wide on a 420 px screen (screenshot: {tmp_path})"
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
