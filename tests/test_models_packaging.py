"""Models ship as package data, are found without the repository, and are checked against their
contract (version, sha256) before a session is created."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.infer.runtime import ModelError, default_models_dir, load_runtime
from tests.conftest import REPO, icbm152_localizer

NAME = "cc_attention_unet"
pytestmark = pytest.mark.skipif(not (REPO / "models" / f"{NAME}.json").exists(), reason="no shipped CC model")


def _copy_model(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".json", ".onnx"):
        shutil.copy(REPO / "models" / f"{NAME}{suffix}", folder / f"{NAME}{suffix}")
    return folder


def test_a_model_file_that_is_not_the_contracts_is_refused(tmp_path):
    folder = _copy_model(tmp_path)
    with open(folder / f"{NAME}.onnx", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="sha256"):
        load_runtime(NAME, models_dir=folder)


def test_an_unknown_contract_version_is_refused(tmp_path):
    folder = _copy_model(tmp_path)
    contract = json.loads((folder / f"{NAME}.json").read_text())
    contract["contract_version"] = "2.0"
    (folder / f"{NAME}.json").write_text(json.dumps(contract))
    with pytest.raises(ModelError, match="contract_version 2.0"):
        load_runtime(NAME, models_dir=folder)


def test_models_folder_from_the_package_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDSEG_MODELS", raising=False)
    assert (default_models_dir() / f"{NAME}.json").exists()
    monkeypatch.setenv("MEDSEG_MODELS", str(tmp_path))
    assert default_models_dir() == tmp_path
    with pytest.raises(ModelError, match="MEDSEG_MODELS"):
        load_runtime(NAME)


def test_an_installed_wheel_positions_a_localizer_without_the_repository(tmp_path):
    """Build the wheel, install it (not editable) into its own folder, and run `medseg position`
    from outside the repository: the models must come from the installed package."""
    from medseg.io import write_dicom_series

    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("medseg-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    assert (target / "medseg" / "models" / f"{NAME}.onnx").is_file()
    write_dicom_series(icbm152_localizer(), tmp_path / "localizer", series_description="loc sag",
                       series_number=1)

    env = {k: v for k, v in os.environ.items() if k not in ("MEDSEG_MODELS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    code = ("import sys, medseg; from medseg.cli import main; "
            "assert medseg.__file__.startswith(sys.argv[1]), medseg.__file__; "
            "sys.exit(main(['position', sys.argv[2], '-o', sys.argv[3], '-q']))")
    run = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "localizer"),
                          str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    (result,) = (tmp_path / "out").rglob("result.json")
    data = json.loads(result.read_text())
    assert data["model"]["sha256"] == json.loads((REPO / "models" / f"{NAME}.json").read_text())["sha256"]
    assert abs(data["angles"]["final"]["angle_deg"]) < 45
