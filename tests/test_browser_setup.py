"""`make test` installs what the browser tests need, and says what to run when it cannot."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import browser_harness  # noqa: E402


def test_the_dev_extra_installs_playwright_and_the_browser_marker_is_registered():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = {Requirement(line).name for line in pyproject["project"]["optional-dependencies"]["dev"]}
    assert "playwright" in dev
    markers = pyproject["tool"]["pytest"]["ini_options"]["markers"]
    assert any(marker.startswith("browser:") for marker in markers)


def test_make_test_installs_chromium_before_running_the_suite():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    prerequisites = re.search(r"^test:(.*)$", makefile, re.MULTILINE).group(1).split()
    assert "chromium" in prerequisites and "venv" in prerequisites
    recipe = makefile.split("\nchromium:", 1)[1].split("\n\n", 1)[0]
    assert browser_harness.INSTALL_COMMAND in recipe


def test_a_missing_chromium_is_a_skip_that_names_the_one_command(monkeypatch, tmp_path):
    monkeypatch.delenv("LENSLLM_NB_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert browser_harness.find_chromium() is None
    reason = browser_harness.missing_requirements()
    if "Playwright" not in reason:  # with Playwright installed, Chromium is what is missing
        assert "apt-get install -y chromium" in reason
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert browser_harness.find_chromium() == str(fake)
