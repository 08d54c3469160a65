"""The inference path never imports torch, MONAI or matplotlib (training/export/plotting only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "monai", "matplotlib")

# Every module a command of the inference path imports (eagerly or lazily), then the CLI's
# --help, `medseg info`, and the spine composer's automatic backend choice on this machine.
SCRIPT = r"""
import contextlib, io, json, sys, tempfile
import numpy as np
modules = ["medseg.cli", "medseg.io", "medseg.positioning.pipeline", "medseg.positioning.qc",
           "medseg.segment.infer", "medseg.pipeline", "medseg.preprocess.skullstrip",
           "medseg.preprocess.n4", "medseg.spine", "medseg.spine.outputs", "medseg.batch.run",
           "medseg.batch.routing", "medseg.infer.runtime", "medseg.infer.batching", "medseg.listen",
           "medseg.listen.send"]
for name in modules:
    __import__(name)
from medseg.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
from medseg.io import write_dicom_series
from medseg.volume import Volume, VolumeMeta
with tempfile.TemporaryDirectory() as tmp:
    write_dicom_series(Volume(np.zeros((8, 8, 3), np.int16), np.eye(4), VolumeMeta(modality="MR")), tmp + "/s")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["info", tmp, "-q"]) == 0
from medseg.spine.compose import StitchOptions, _gpu_visible, _resolve_backend
backend = _resolve_backend(StitchOptions())
print(json.dumps({"gpu": _gpu_visible(), "backend": backend,
                  "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def test_inference_path_imports_no_training_libraries():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + SCRIPT], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if report["gpu"]:  # the torch CUDA backend may be chosen, and then torch is imported
        report["heavy"] = [m for m in report["heavy"] if m != "torch"]
    else:
        assert report["backend"] == ["sitk", "cpu"]
    assert report["heavy"] == []


def test_help_is_fast_to_start():
    """`medseg --help` imports nothing beyond the standard library and medseg.cli."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import sys, contextlib, io\nfrom medseg.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('numpy', 'pydicom', 'SimpleITK', 'onnxruntime', 'scipy', 'cv2', 'nibabel')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_info_on_common_files_imports_neither_pydicom_nor_nibabel(tmp_path):
    """`medseg info` on a classic series (written here, so pydicom is free to be used for that in
    this process) reads its headers with the common-case reader: the child imports neither
    pydicom nor nibabel (nibabel's NIfTI module imports pydicom), nor tqdm off a terminal."""
    import numpy as np

    from medseg.io import write_dicom_series
    from medseg.volume import Volume, VolumeMeta

    write_dicom_series(Volume(np.zeros((8, 8, 3), np.int16), np.eye(4), VolumeMeta(modality="MR")),
                       tmp_path / "s")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import sys, contextlib, io\nfrom medseg.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()) as out:\n    code = main(['info', {str(tmp_path)!r}])\n"
            "assert code == 0 and 'LPS' in out.getvalue(), out.getvalue()\n"
            "print(sorted(m for m in ('pydicom', 'nibabel', 'tqdm', 'scipy', 'SimpleITK') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
