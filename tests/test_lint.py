"""ruff and mypy run clean (configuration in pyproject.toml); a finding fails the test."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    module = command[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed (pip install -e .[dev])")
    return subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True,
                          timeout=900)


def test_ruff_finds_nothing():
    out = _run("ruff", "check", "medseg", "pipelines", "tests")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing():
    out = _run("mypy", "medseg")
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_module_skipped_by_mypy():
    """mypy checks every module (no ``ignore_errors`` override); the strict modules are listed once."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    overrides = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    skipped = [m for o in overrides if o.get("ignore_errors") for m in o["module"]]
    strict = [m for o in overrides if o.get("disallow_untyped_defs") for m in o["module"]]
    assert skipped == []
    assert len(strict) == len(set(strict))
    assert {"medseg.cli", "medseg.config", "medseg.errors"} <= set(strict)
