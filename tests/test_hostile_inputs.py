"""Hostile inputs at the scan/load level: damage is never silent, resources stay bounded, geometry
is validated, every file is accounted for. Each class is built from pydicom-written series."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from medseg.errors import CorruptFileError, InconsistentSeriesError, InvalidGeometryError, ResourceLimitError
from medseg.io import scan
from medseg.io.dicom_headers import ScanLimits, open_dataset, read_header
from tests.conftest import make_dataset, oblique_geometry, write_series

N = 9


def _series(folder: Path, n: int = N, **extra) -> list[Path]:
    iop, ipps, pixel = oblique_geometry(n=n)
    rng = np.random.default_rng(1)
    slices = [rng.integers(0, 3000, size=(24, 20)).astype(np.int16) for _ in range(n)]
    return write_series(folder, slices, ipps, iop, pixel, **extra)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _only_series(folder):
    result = scan(folder)
    assert len(result.series) == 1, result.summary()
    return result, result.series[0]


# --- damage is never silent -------------------------------------------------------------------

@pytest.mark.parametrize("cut", ["in_header", "before_pixels", "in_pixels", "to_100_bytes", "empty"])
def test_a_cut_file_marks_its_series_damaged(tmp_path, cut):
    paths = _series(tmp_path / "s")
    victim = sorted(paths)[3]
    data = victim.read_bytes()
    pixel_at = data.rfind(b"\xe0\x7f\x10\x00")
    length = {"in_header": pixel_at // 2, "before_pixels": pixel_at, "in_pixels": pixel_at + 100,
              "to_100_bytes": 100, "empty": 0}[cut]
    victim.write_bytes(data[:length])
    result, ref = _only_series(tmp_path / "s")
    assert result.files[str(victim)][0] == "damaged", result.files[str(victim)]
    assert not ref.ok
    with pytest.raises(CorruptFileError, match="damaged"):
        ref.load()
    accounted = set(result.files)
    assert accounted == {str(p) for p in paths}


@pytest.mark.skipif(os.geteuid() == 0 and not os.environ.get("MEDSEG_TEST_AS_ROOT_PERMS"),
                    reason="root reads every file; permission denial cannot be simulated")
def test_unreadable_file_marks_its_series(tmp_path):  # pragma: no cover - needs a non-root user
    paths = _series(tmp_path / "s")
    os.chmod(paths[0], 0)
    _, ref = _only_series(tmp_path / "s")
    assert not ref.ok


def test_unreadable_file_is_attributed_by_its_name(tmp_path, monkeypatch):
    """Permission denied (simulated: root can read anything) is damage, not 'non-image'."""
    import medseg.io.dicom_headers as headers
    import medseg.io.fast_header as fast_headers

    paths = _series(tmp_path / "s")
    victim = str(sorted(paths)[0])
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if str(file) == victim:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(headers, "open", guarded_open, raising=False)
    monkeypatch.setattr(fast_headers, "open", guarded_open, raising=False)  # both readers open files
    result, ref = _only_series(tmp_path / "s")
    assert result.files[victim][0] == "damaged"
    assert "unreadable" in result.files[victim][1]
    assert not ref.ok


def test_a_stray_text_file_is_not_damage(tmp_path):
    _series(tmp_path / "s")
    (tmp_path / "s" / "notes.txt").write_text("acquired on the second scanner")
    result, ref = _only_series(tmp_path / "s")
    assert ref.ok
    assert result.files[str(tmp_path / "s" / "notes.txt")][0] == "non-image"


def test_duplicate_instances_identical_bytes_keep_one(tmp_path):
    paths = _series(tmp_path / "s")
    shutil.copy(paths[2], tmp_path / "s" / "copy_of_one")
    result, ref = _only_series(tmp_path / "s")
    assert ref.ok and ref.shape[2] == N
    assert result.files[str(tmp_path / "s" / "copy_of_one")][0] == "non-image"


def test_duplicate_instance_with_other_pixels_makes_the_series_inconsistent(tmp_path):
    paths = _series(tmp_path / "s")
    ds = pydicom.dcmread(paths[2])
    array = ds.pixel_array.copy()
    array[0, 0] += 1
    ds.PixelData = array.tobytes()
    ds.save_as(tmp_path / "s" / "altered_copy")
    _, ref = _only_series(tmp_path / "s")
    with pytest.raises(InconsistentSeriesError, match="share SOP Instance UID"):
        ref.load()


def test_two_studies_that_reuse_series_and_sop_uids_both_survive(tmp_path):
    paths = _series(tmp_path / "a", series_uid="1.2.3.9", study_uid="1.2.3.100")
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID = "1.2.3.200"  # an anonymiser that kept the series and SOP UIDs
        (tmp_path / "b").mkdir(exist_ok=True)
        ds.save_as(tmp_path / "b" / p.name)
    result = scan(tmp_path)
    assert sorted(s.uid for s in result.studies) == ["1.2.3.100", "1.2.3.200"]
    assert all(ref.ok and ref.shape[2] == N for ref in result.series)


# --- bounded resources ------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_device_link_and_loop_are_not_opened(tmp_path):
    _series(tmp_path / "s")
    os.mkfifo(tmp_path / "s" / "pipe")
    os.symlink("/dev/zero", tmp_path / "s" / "zero")
    os.symlink(tmp_path / "s", tmp_path / "s" / "loop")
    os.symlink(tmp_path / "missing", tmp_path / "s" / "dangling")
    outcome = {}

    def target():
        outcome["result"] = scan(tmp_path / "s")

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "scan hung on a FIFO or device"
    result = outcome["result"]
    assert len(result.series) == 1 and result.series[0].ok
    for name in ("pipe", "zero", "dangling"):
        assert result.files[str(tmp_path / "s" / name)][0] == "excluded"


def test_declared_frames_are_checked_before_any_allocation(tmp_path):
    """An RLE multi-frame header declaring 10^6 frames over a few fragments is refused at once."""
    iop, ipps, pixel = oblique_geometry(n=1)
    frame = np.zeros((24, 20), np.int16)
    ds = make_dataset(frame, ipps[0], iop, pixel, study_uid=generate_uid(), series_uid=generate_uid())
    ds.PixelData = encapsulate([b"\x00" * 64, b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.NumberOfFrames = 10**6
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises((CorruptFileError, ResourceLimitError), match="frame"):
        read_header(str(path))
    with pytest.raises(ResourceLimitError):
        read_header(str(path), limits=ScanLimits(max_frames=1000))
    ds.NumberOfFrames = 5  # within the limits, more frames than fragments
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(CorruptFileError, match="5 frames but"):
        read_header(str(path))


# --- geometry is validated --------------------------------------------------------------------

@pytest.mark.parametrize("tag,value,match", [
    ("PixelSpacing", ["0", "0"], "PixelSpacing"),
    ("PixelSpacing", ["-1", "1"], "PixelSpacing"),
    ("ImageOrientationPatient", ["0"] * 6, "unit"),
    ("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"], "orthogonal"),
    ("ImagePositionPatient", ["1e300", "0", "0"], "ImagePositionPatient"),
])
def test_impossible_geometry_is_a_specific_error(tmp_path, tag, value, match):
    _series(tmp_path / "s", **{tag: value})
    result, ref = _only_series(tmp_path / "s")
    assert not ref.ok
    assert ref.summary()["orientation"] == "?"
    with pytest.raises(InvalidGeometryError, match=match):
        ref.load()


@pytest.mark.parametrize("pixels", ["nan", "slope_overflow"])
def test_non_finite_values_are_refused(tmp_path, pixels):
    extra = {"RescaleSlope": "1e39", "RescaleIntercept": "0"} if pixels == "slope_overflow" else {}
    paths = _series(tmp_path / "s", **extra)
    if pixels == "nan":
        ds = pydicom.dcmread(paths[0])
        del ds.PixelData
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
        ds.FloatPixelData = np.full((24, 20), np.nan, np.float32).tobytes()
        ds.save_as(paths[0])
        for p in paths[1:]:
            q = pydicom.dcmread(p)
            del q.PixelData
            q.BitsAllocated, q.BitsStored, q.HighBit = 32, 32, 31
            q.FloatPixelData = np.ones((24, 20), np.float32).tobytes()
            q.save_as(p)
    _, ref = _only_series(tmp_path / "s")
    with pytest.raises(CorruptFileError, match="NaN or infinite"):
        ref.load()


# --- NIfTI ------------------------------------------------------------------------------------

def test_broken_and_empty_nifti_are_damaged_not_skipped(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"this is not gzip at all" * 20)
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), np.eye(4)), tmp_path / "empty.nii.gz")
    good = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4))
    nib.save(good, tmp_path / "cut.nii")
    data = (tmp_path / "cut.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    result = scan(tmp_path)
    for name in ("broken.nii.gz", "empty.nii.gz", "cut.nii"):
        assert result.files[str(tmp_path / name)][0] == "damaged", name
    refs = {Path(r.source).name: r for r in result.series}
    for ref in refs.values():
        with pytest.raises(CorruptFileError):
            ref.load()


# --- accounting, outputs inside inputs, inputs untouched --------------------------------------

def test_every_file_is_accounted_for_and_inputs_are_untouched(tmp_path):
    _series(tmp_path / "s")
    (tmp_path / "s" / "readme.md").write_text("hello")
    os.symlink("/dev/null", tmp_path / "s" / "null")
    before = _tree_digest(tmp_path / "s")
    result = scan(tmp_path / "s")
    every = {str(p) for p in (tmp_path / "s").rglob("*") if not p.name.startswith(".")}
    assert set(result.files) == every
    assert _tree_digest(tmp_path / "s") == before


def test_output_folders_inside_the_input_are_not_scanned(tmp_path):
    _series(tmp_path / "s")
    out = tmp_path / "s" / "out"
    _series(out / "derived")  # something a run wrote
    (out / ".medseg-output").write_text("{}")
    other = tmp_path / "s" / "elsewhere"
    _series(other / "x")
    result = scan(tmp_path / "s", exclude=[other])
    assert len(result.series) == 1
    assert result.files[str(out)][0] == "excluded"


def test_native_pixels_read_directly_equal_pydicom(tmp_path):
    """The direct read of uncompressed pixel data reproduces pydicom's masking and sign extension."""
    iop, ipps, pixel = oblique_geometry(n=1)
    values = np.array([[0x0FFF, 0x0800, 0x0001, 0x0ABC]] * 3, np.uint16)
    for representation in (0, 1):
        ds = make_dataset(values.astype(np.int16), ipps[0], iop, pixel, study_uid=generate_uid(),
                          series_uid=generate_uid())
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, representation
        raw = values | np.uint16(0xF000)  # garbage in the unused high bits
        ds.PixelData = raw.tobytes()
        path = tmp_path / f"p{representation}.dcm"
        ds.save_as(path, enforce_file_format=True)
        layout = read_header(str(path)).frames[0].layout
        assert layout is not None
        ours, theirs = layout.read(str(path)), open_dataset(str(path), pixels=True).pixel_array
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_a_series_short_of_its_declared_images_is_incomplete(tmp_path):
    """ImagesInAcquisition catches what geometry cannot: the last slice missing, or one file of a
    series given alone."""
    paths = _series(tmp_path / "s", ImagesInAcquisition=N, AcquisitionNumber=1)
    _, ref = _only_series(tmp_path / "s")
    assert ref.ok and ref.shape[2] == N
    last = max(paths, key=lambda p: pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)
    last.unlink()
    _, ref = _only_series(tmp_path / "s")
    with pytest.raises(InconsistentSeriesError, match=f"holds {N - 1} of the {N} images"):
        ref.load()
    _, ref = _only_series(paths[0])
    assert not ref.ok


def test_a_load_error_quotes_the_series_without_the_patient_or_control_characters(tmp_path):
    """The error message of a refused series (study.json, summary.csv and the batch log quote it)
    names the series by its redacted description: no patient name typed into it, and no line
    break that would forge a log line."""
    paths = _series(tmp_path / "s", description="loc Secret Patient\nWARNING medseg: forged")
    middle = sorted(paths, key=lambda p: pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)[N // 2]
    middle.unlink()  # uneven slice spacing: the series is refused when loaded
    _, ref = _only_series(tmp_path / "s")
    with pytest.raises(InconsistentSeriesError, match="uneven slice spacing") as error:
        ref.load()
    message = str(error.value)
    assert "Secret" not in message and "Patient" not in message and "\n" not in message, message
    assert "'loc WARNING medseg: forged'" in message and ref.description == "loc WARNING medseg: forged"


def test_real_ge_localizer_without_its_last_sagittal_slice_is_refused(tmp_path):
    from tests.conftest import data_path

    source = data_path("dicom", "ge-3plane-localizer", "01_3_Plane_Localizer_FF")
    shutil.copytree(source, tmp_path / "ge")
    result = scan(tmp_path / "ge")
    assert all(ref.ok for ref in result.series)
    sagittal = next(ref for ref in result.series if ref.label == "sag")
    edge = sagittal._stack.frames[-1].path  # the last slice along the normal: no gap is left
    os.unlink(edge)
    result = scan(tmp_path / "ge")
    assert all(not ref.ok for ref in result.series)
    assert "ImagesInAcquisition" in str(next(r for r in result.series if r.label == "sag").error)
