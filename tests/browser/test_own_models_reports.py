"""The reports of a run on your own models, as a user reads them (issue 21).

The run is tests/test_own_models.py's (the session fixture `own_models_run`):
templates/own_models.yaml on three tiny local models and a local JSONL task. Its
index and notebook 02's report must name every model and the task by its short
name; no full path of a model folder or the data file may show on the page.
"""

from __future__ import annotations

import pytest

from browser_harness import open_page
from own_models import MODELS, TASK_FILE


@pytest.fixture(scope="module")
def page(chromium):
    """A page that may load only file: URLs (a report loads nothing else)."""
    opened, problems = open_page(chromium, "file:")
    yield opened, problems
    opened.context.close()


@pytest.mark.parametrize("where", ["index.html", "reports/02_fit_phase_law.html"])
def test_pages_show_short_names_and_no_full_path(own_models_run, page, where, tmp_path):
    opened, problems = page
    assert own_models_run.code == 0, own_models_run.stdout
    opened.goto((own_models_run.out / where).as_uri(), wait_until="load")
    text = opened.inner_text("body")
    opened.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    full = [*own_models_run.models.values(), own_models_run.dataset]
    shown = [path for path in full if path in text]
    assert not shown, f"{where} shows the full paths {shown} (screenshot: {tmp_path / 'page.png'})"
    assert "my_models" not in text and "my_data" not in text
    assert all(model in text for model in MODELS) and TASK_FILE in text
    assert not problems["console"] and not problems["failed"]
