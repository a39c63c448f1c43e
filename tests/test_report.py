"""HTML reports: one self-contained file, code hidden, status and parameters shown."""

from __future__ import annotations

import base64
import re

import nbformat
import pytest

from lensllm_nb.cli import main
from lensllm_nb.errors import ConfigError
from lensllm_nb.workflow.report import (find_templates, notebook_status, render_report, render_reports,
    static_widgets, write_index)
from offline_html import network_loads

# A 1×1 PNG.
_PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)).decode()
_SECRET_CODE = "result_table = compute_the_thing()"


def _executed(path, *, error=False, widgets=False):
    """Write a notebook that looks executed by papermill (outputs, parameters)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"parameters": {"model": "zoo/tiny-gpt2", "sizes": [0, 16, 32]},
                                "end_time": "2025-01-01T00:00:00"}
    figure = nbformat.v4.new_code_cell(_SECRET_CODE, execution_count=1)
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _PNG, "text/plain": "<Figure>"})]
    table = nbformat.v4.new_code_cell("table", execution_count=2)
    table.outputs = [nbformat.v4.new_output(
        "execute_result", execution_count=2,
        data={"text/html": "<table><tr><th>model</th><th>rmse_log</th></tr></table>", "text/plain": "t"})]
    scratch = nbformat.v4.new_code_cell("print('scratch')", execution_count=3)
    scratch.metadata["tags"] = ["remove-cell"]
    scratch.outputs = [nbformat.v4.new_output("stream", name="stdout", text="scratch output\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Fit the phase law"), figure, table, scratch]
    if error:
        failing = nbformat.v4.new_code_cell("raise ValueError('bad')", execution_count=4)
        failing.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["ValueError: bad"])]
        nb.cells.append(failing)
    if widgets:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
            "version_major": 2, "version_minor": 0, "state": {}}}
        bar = nbformat.v4.new_code_cell("bar", execution_count=5)
        bar.outputs = [nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "progress 8/8"})]
        nb.cells.append(bar)
    nbformat.write(nb, path)
    return path


def test_report_is_one_html_file_with_embedded_images_and_no_code(tmp_path):
    html = render_report(_executed(tmp_path / "fit.ipynb"), tmp_path / "out" / "fit.html").read_text()
    assert "data:image/png;base64," + _PNG[:20] in html
    assert _SECRET_CODE not in html and "compute_the_thing" not in html
    assert "<th>rmse_log</th>" in html
    assert "scratch output" not in html  # remove-cell tag
    # Title block with the run's parameters.
    assert '<h1>fit</h1>' in html and "zoo/tiny-gpt2" in html and "[0, 16, 32]" in html
    # Images come from the file itself, not from links next to it.
    assert not re.search(r'<img[^>]+src="(?!data:)', html)
    assert "Interactive controls" not in html


def test_failed_notebook_renders_with_its_error(tmp_path):
    path = _executed(tmp_path / "bad.ipynb", error=True)
    nb = nbformat.read(path, as_version=4)
    assert notebook_status(nb) == ("failed", "ValueError: bad")
    nb.metadata["lensllm_nb"] = {"status": "failed", "error": "ValueError: bad (cell In [4])", "seconds": 1.5}
    nbformat.write(nb, path)
    html = render_report(path).read_text()
    assert "lensllm-status-failed" in html and "ValueError: bad (cell In [4])" in html


def test_widgets_become_static_text_and_nothing_loads_from_the_network(tmp_path):
    html = render_report(_executed(tmp_path / "w.ipynb", widgets=True), title="Selection").read_text()
    assert "application/vnd.jupyter.widget-state+json" not in html
    assert "application/vnd.jupyter.widget-view+json" not in html
    assert "progress 8/8" in html  # the bar's final line, as text
    assert "loads nothing from the network" in html
    assert "<h1>Selection</h1>" in html
    assert network_loads(html) == []
    assert "cdnjs" not in html and "unpkg" not in html and "require.min.js" not in html


def test_bare_widget_reprs_are_dropped_and_the_file_is_untouched(tmp_path):
    path = _executed(tmp_path / "w.ipynb", widgets=True)
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].outputs[0]["data"]["text/plain"] = "HBox(children=(IntProgress(value=8),))"
    nbformat.write(nb, path)
    before = path.read_bytes()
    html = render_report(path).read_text()
    assert "HBox(" not in html and "IntProgress" not in html
    assert path.read_bytes() == before
    assert static_widgets(nbformat.read(path, as_version=4)) == 1


def test_report_without_widgets_needs_no_note_and_loads_nothing(tmp_path):
    path = _executed(tmp_path / "s.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, path)
    html = render_report(path).read_text()
    assert "loads nothing from the network" not in html
    assert network_loads(html) == []


def test_network_loads_finds_cdn_scripts_styles_and_fonts():
    page = ('<script src="https://cdnjs.cloudflare.com/require.js"></script><link rel="stylesheet" '
            'href="//fonts.example/x.css"><style>@import "https://a.example/b.css"; '
            'p { background: url(http://c.example/d.png) }</style><a href="https://ok.example/">link</a>'
            '<img src="data:image/png;base64,AAAA"><script>var s = "https://unpkg.com/x/embed.js";</script>')
    assert len(network_loads(page)) == 5


def test_render_reports_writes_an_index_with_relative_links(tmp_path):
    notebooks = [_executed(tmp_path / "a.ipynb"), _executed(tmp_path / "b.ipynb", error=True)]
    entries = render_reports(notebooks, tmp_path / "site")
    assert [entry["status"] for entry in entries] == ["ok", "failed"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="a.html"' in index and 'href="b.html"' in index
    assert "2 notebooks, 1 failed" in index


def test_index_escapes_names_and_errors(tmp_path):
    page = write_index([{"name": "<x>", "status": "failed", "error": "<script>", "seconds": 2.0,
                         "parameters": {"model": "a&b"}}], tmp_path / "index.html").read_text()
    assert "&lt;x&gt;" in page and "&lt;script&gt;" in page and "a&amp;b" in page


def test_report_cli_renders_and_lists(tmp_path, capsys):
    path = _executed(tmp_path / "c.ipynb")
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "c.html" in out and (tmp_path / "r" / "index.html").is_file()


def test_missing_template_folder_and_notebook_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="`templates`"):
        find_templates(tmp_path)
    with pytest.raises(ConfigError, match="`notebook`"):
        render_report(tmp_path / "missing.ipynb")
    path = _executed(tmp_path / "d.ipynb")
    with pytest.raises(ConfigError, match="several files named"):
        render_reports([path, path], tmp_path / "r")


def _css_rules(html, selector) -> list:
    """The declarations of every CSS rule of `html` whose selector list names `selector`."""
    css = re.sub(r"/\*.*?\*/", "", html, flags=re.S)
    return [body for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)
            if selector in [s.strip() for s in selectors.split(",")]]


def test_report_text_wraps_at_spaces_and_tables_stay_in_their_output(tmp_path):
    html = render_report(_executed(tmp_path / "fit.ipynb"), tmp_path / "out" / "fit.html").read_text()
    # The lab CSS breaks words anywhere ("forecast the|ir gap"); the report's rule, more specific, undoes it.
    (pre,) = _css_rules(html, "body .jp-OutputArea-output pre")
    assert "word-break: normal" in pre and "overflow-wrap: anywhere" in pre and "pre-wrap" in pre
    css = re.sub(r"/\*.*?\*/", "", html, flags=re.S)
    assert css.count("break-all") == 1  # the lab's own rule, the one overridden
    assert "break-all" in "".join(_css_rules(html, ".jp-OutputArea-output pre"))
    (output,) = _css_rules(html, "body .jp-OutputArea-output")
    assert "overflow-x: auto" in output
    assert '<meta content="width=device-width' in html or 'name="viewport"' in html


def test_index_tables_scroll_in_their_own_box_on_a_narrow_screen(tmp_path):
    entries = [{"name": "01_finetune_subsets__zoo-llama-small-" + "x" * 60, "status": "failed",
                "error": "RuntimeError: " + "long " * 40, "parameters": {"model": "zoo/llama-small"}}]
    html = write_index(entries, tmp_path / "index.html").read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "break-all" not in html
    (box,) = _css_rules(html, ".table-scroll")
    assert "overflow-x: auto" in box and "max-width: 100%" in box
    # Every table sits directly in a scroll box, so only the box scrolls, never the page.
    assert html.count("<table") == html.count('<div class="table-scroll"><table') == 1
    assert re.search(r"@media \(max-width: \d+px\)", html)
