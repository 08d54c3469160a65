"""The shipped skull-stripping model through onnxruntime: real heads (skipped without shared data),
skull-stripped input, bad input, and `medseg preprocess`."""

import json

import numpy as np
import pytest

from medseg.segment.evaluate import dice
from tests.conftest import REPO, data_path

pytestmark = pytest.mark.skipif(not (REPO / "models" / "skullstrip_attention_unet.json").exists(),
                                reason="no shipped skull-stripping model")


@pytest.fixture(scope="module")
def stripper():
    from medseg.preprocess.skullstrip import SkullStripper

    return SkullStripper()


def test_held_out_head_3d(stripper):
    from medseg.io import read_nifti

    folder = data_path("brain", "fs-training", "sub-09")
    t1 = read_nifti(folder / "T1.mgz")
    truth = np.asarray(read_nifti(folder / "brainmask.mgz").array) > 0
    result = stripper.extract(t1)
    mask = np.asarray(result.mask.array) > 0
    assert result.mask.shape == t1.shape and result.native_planes
    assert dice(mask, truth) > 0.95
    assert abs(result.volume_ml - truth.sum() / 1000) < 150


def test_held_out_head_as_a_thick_slice_localizer(stripper):
    from medseg.segment.data import Subject

    head = Subject.load(data_path("brain", "fs-training", "sub-08"))
    volume, labels = head.sample_localizer(rotation_deg=-20.0, n_slices=11, gap_mm=5.0, target="brain")
    result = stripper.extract(volume)
    truth = np.stack([label.T for label in labels], axis=-1)
    assert dice(np.asarray(result.mask.array) > 0, truth) > 0.93


def test_already_stripped_brain_keeps_its_brain():
    """nilearn's ICBM152 template is brain only: the mask must cover it, not shrink inside it."""
    from medseg.examples import icbm152_head
    from medseg.preprocess.skullstrip import SkullStripper

    brain = icbm152_head()
    if brain is None:
        pytest.skip("nilearn not installed")
    brain = brain.resample_to(_grid(brain, 2.0))
    result = SkullStripper().extract(brain)
    foreground = np.asarray(brain.array) > 0.1 * np.asarray(brain.array).max()
    assert dice(np.asarray(result.mask.array) > 0, foreground) > 0.9


def _grid(volume, spacing):
    from medseg.volume import Volume

    shape = tuple(int(n * s / spacing) for n, s in zip(volume.shape, volume.spacing))
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] / volume.spacing * spacing
    return Volume(np.zeros(shape, np.uint8), affine)


@pytest.mark.parametrize("kind", ["noise", "constant", "bottle"])
def test_images_without_a_brain_are_a_clear_error(stripper, kind):
    from medseg.preprocess.skullstrip import NoBrainFoundError
    from medseg.volume import Volume

    rng = np.random.default_rng(0)
    if kind == "noise":
        array = np.hypot(rng.normal(0, 30, (80, 80, 80)), rng.normal(0, 30, (80, 80, 80)))
    elif kind == "constant":
        array = np.full((48, 48, 48), 5.0)
    else:  # a uniform cylinder phantom, sagittal slices
        yy, zz = np.mgrid[0:128, 0:128]
        array = np.repeat((((yy - 64) ** 2 + (zz - 64) ** 2) < 50 ** 2)[:, :, None] * 800.0, 40, axis=2)
        array = array.transpose(2, 0, 1)
    with pytest.raises(NoBrainFoundError, match="no brain found"):
        stripper.extract(Volume(array.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])))


def test_preprocess_cli_writes_corrected_image_field_and_mask(tmp_path, capsys):
    from medseg.cli import main

    source = data_path("dicom", "siemens-xa30-enhanced", "5_anat-T1w_acq-tfl")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in source.rglob("*"))
    status = main(["preprocess", str(source), "-o", str(tmp_path / "out"), "--fast", "-q"])
    assert status == 0
    assert sorted((p.name, p.stat().st_mtime_ns) for p in source.rglob("*")) == before
    import nibabel as nib

    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"bias_corrected.nii.gz", "bias_field.nii.gz", "brain_mask.nii.gz", "brain.nii.gz",
            "preprocess.json"} <= files
    mask = nib.load(str(tmp_path / "out" / "brain_mask.nii.gz"))
    corrected = nib.load(str(tmp_path / "out" / "bias_corrected.nii.gz"))
    assert mask.shape == corrected.shape and np.allclose(mask.affine, corrected.affine)
    report = json.loads((tmp_path / "out" / "preprocess.json").read_text())
    assert report["schema"] == "medseg.preprocess/1" and report["error"] is None
    assert 900 < report["brain"]["volume_ml"] < 2000  # an adult brain
