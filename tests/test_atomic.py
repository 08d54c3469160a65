"""Atomic output files: their permissions follow the umask in force when they are written, and
importing the module leaves the umask alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from medseg.io.atomic import atomic_path, write_text_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_file_mode_follows_the_current_umask(tmp_path, umask, mode):
    old = os.umask(umask)  # set after medseg.io.atomic was imported: the mode must follow it
    try:
        path = write_text_atomic(tmp_path / "out.json", "{}")
        with atomic_path(tmp_path / "image.nii.gz", suffix=".nii.gz") as temp:
            temp.write_bytes(b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "image.nii.gz").stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz", "out.json"]  # no temp left


def test_import_and_writes_never_set_the_umask(tmp_path):
    """Setting the umask (even to read it back) races with other threads creating files."""
    code = ("import os\ncalls = []\nreal = os.umask\n"
            "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
            "import medseg.io.atomic as atomic\n"
            f"atomic.write_text_atomic({str(tmp_path / 'a.txt')!r}, 'x')\n"
            "print(calls)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "a.txt").read_text() == "x"


def test_failed_write_leaves_no_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.txt") as temp:
        temp.write_text("partial")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_json_outputs_are_strict_json():
    """NaN and infinities (a measurement that cannot be taken) are written as null: JSON has no
    NaN/Infinity, and strict readers (.NET, Node's JSON.parse) refuse them."""
    import json

    import numpy as np

    from medseg.io.atomic import json_text

    text = json_text({"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": (np.float64("nan"), 2),
                      "d": np.array([1.0, np.nan]), "e": "NaN"})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written")) == \
        {"a": None, "b": [1.5, None, None], "c": [None, 2], "d": [1.0, None], "e": "NaN"}
