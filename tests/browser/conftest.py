"""Fixtures of the browser tests: Chromium through Playwright and a private JupyterLab.

Every test in this folder is marked ``browser``. Without Playwright or Chromium the
tests are skipped with the one command that installs what is missing.
"""

from __future__ import annotations

import os

import pytest

from browser_harness import JupyterLab, launch_chromium, missing_requirements, open_page


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium():
    """A headless system Chromium, shared by the session's tests."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory):
    """The folder JupyterLab serves: copies of the notebooks with test parameters."""
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="session")
def lab(chromium, lab_root, tmp_path_factory):
    """A JupyterLab server of this environment, stopped with its kernels at the end."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    server = JupyterLab(lab_root, tmp_path_factory.mktemp("lab-server"), env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab_page(chromium, lab):
    """A browser page that can reach only the JupyterLab server (one per test module).

    ``lab_page.problems`` collects console errors and failed requests.
    """
    page, problems = open_page(chromium, f"http://127.0.0.1:{lab.port}/")
    yield LabPage(page, problems)
    page.context.close()


class LabPage:
    """A Playwright page with the problems it collected."""

    def __init__(self, page, problems):
        self.page = page
        self.problems = problems


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request, tmp_path):
    """Save the page of a failing test next to its temp files and print where."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or "lab_page" not in request.fixturenames:
        return
    shot = tmp_path / "failure.png"
    try:
        request.getfixturevalue("lab_page").page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot of the page the test failed on: {shot}")
    except Exception as exc:  # the page may be gone; the test's own error matters more
        print(f"\nno screenshot of the failing page: {exc}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can see a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
