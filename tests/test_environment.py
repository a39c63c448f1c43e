"""environment.yml installs the same packages, with the same bounds, as pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# Extras a user environment gets; `dev` only adds the test tools.
USER_EXTRAS = ("finetune", "notebooks", "dask")
# Installed from pip in environment.yml (pinned CPU/CUDA wheels, see its comment).
PIP_ONLY = {"torch"}


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.fixture(scope="module")
def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def _expected(pyproject) -> dict:
    """Conda name -> specifier for every pyproject requirement a user environment needs."""
    expected = {}
    requirements = list(pyproject["dependencies"])
    for extra in USER_EXTRAS:
        requirements += pyproject["optional-dependencies"][extra]
    for line in requirements:
        req = Requirement(line)
        # conda ships dask's extras as separate packages.
        names = [req.name, *sorted(req.extras)] if req.name == "dask" else [req.name]
        for name in names:
            expected[name.lower()] = str(req.specifier)
    return expected


def _conda_entries(environment) -> dict:
    entries = {}
    for item in environment["dependencies"]:
        if isinstance(item, str) and item.split("=")[0] not in ("python", "pip"):
            req = Requirement(item)
            entries[req.name.lower()] = str(req.specifier)
    return entries


def _pip_entries(environment) -> list:
    sections = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(sections) == 1, "environment.yml needs exactly one pip section"
    return sections[0]


def test_conda_packages_match_pyproject(pyproject, environment):
    expected = {name: spec for name, spec in _expected(pyproject).items() if name not in PIP_ONLY}
    assert _conda_entries(environment) == expected


def test_pip_section_pins_torch_and_installs_this_package_with_its_extras(pyproject, environment):
    pip = _pip_entries(environment)
    torch = [Requirement(line) for line in pip if line.startswith("torch")]
    assert [str(req.specifier) for req in torch] == [_expected(pyproject)["torch"]]
    editable = [line for line in pip if line.startswith("-e")]
    assert len(editable) == 1
    extras = editable[0].split("[", 1)[1].rstrip(']"').split(",")
    assert sorted(extras) == sorted(USER_EXTRAS)


def test_python_version_satisfies_requires_python(pyproject, environment):
    pythons = [item for item in environment["dependencies"] if isinstance(item, str) and item.startswith("python=")]
    assert len(pythons) == 1
    version = Version(pythons[0].split("=", 1)[1])
    assert version in SpecifierSet(pyproject["requires-python"])
    assert environment["name"] == "lensllm-nb"
