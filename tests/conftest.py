"""Shared fixtures: real data location, and a DICOM series factory written with plain pydicom.

The factory is independent of medseg's own writer, so loader tests do not test medseg against
itself. Real data is found through one setting, MEDSEG_DATA (default ../shared/data).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSEG_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A path under the real data folder, or skip the test when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (set MEDSEG_DATA)")
    return path


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def oblique_geometry(rows=24, cols=20, n=9, pixel=(0.9, 1.1), step=2.5, origin=(-12.0, 30.5, -40.25)):
    """(iop, ipps, pixel_spacing) of an oblique stack, computed from first principles."""
    rot = rotation("x", 17.0) @ rotation("z", -23.0) @ rotation("y", 8.0)
    row_cos, col_cos = rot[:, 0], rot[:, 1]
    normal = np.cross(row_cos, col_cos)
    ipps = [np.asarray(origin) + k * step * normal for k in range(n)]
    return np.concatenate([row_cos, col_cos]), ipps, pixel


def make_dataset(pixels: np.ndarray, ipp, iop, pixel_spacing, *, study_uid, series_uid,
                 series_number=3, instance=1, description="test series", **extra) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.3.4"
    ds.Modality = "MR"
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "P123"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    if ipp is not None:
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    if iop is not None:
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
    if pixel_spacing is not None:
        ds.PixelSpacing = [f"{v}" for v in pixel_spacing]
    ds.SliceThickness = "1.0"  # deliberately not the slice step
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.int16)).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_series(folder: Path, slices: list[np.ndarray], ipps, iop, pixel_spacing, *,
                 shuffle=True, study_uid=None, series_uid=None, per_slice=None, **extra) -> list[Path]:
    """Write one file per slice with random, extension-less names, in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    order = list(range(len(slices)))
    rng = random.Random(7)
    if shuffle:
        rng.shuffle(order)
    paths = []
    for k in order:
        fields = dict(extra)
        if per_slice:
            fields.update(per_slice(k))
        ds = make_dataset(slices[k], ipps[k] if ipps is not None else None, iop, pixel_spacing,
                          study_uid=study_uid, series_uid=series_uid, instance=k + 1, **fields)
        path = folder / f"IMG{rng.randrange(10**8):08d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def oblique_series(tmp_path):
    """An oblique 9-slice series with gaps (step 2.5 mm, thickness 1 mm), shuffled, no extensions.

    Returns (folder, volume_truth (cols, rows, slices), iop, ipps, pixel_spacing)."""
    iop, ipps, pixel = oblique_geometry()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3000, size=(20, 24, 9)).astype(np.int16)  # (cols, rows, slices)
    slices = [truth[:, :, k].T for k in range(9)]
    folder = tmp_path / "study"
    write_series(folder, slices, ipps, iop, pixel)
    return folder, truth, iop, ipps, pixel


def icbm152_localizer(pitch_deg: float = 0.0, *, slices: int = 5, study: dict | None = None):
    """nilearn's ICBM152 head scanned as a sagittal localizer of ``slices`` x 5 mm slabs
    (:func:`medseg.demo.scan_localizer`), pitched nose-up by ``pitch_deg``; skips when nilearn is
    absent."""
    from medseg.demo import scan_localizer
    from medseg.examples import icbm152_head

    head = icbm152_head()
    if head is None:
        pytest.skip("nilearn (ICBM152 template) not installed")
    return scan_localizer(head, slices=slices, thickness_mm=5.0, pitch_deg=pitch_deg, offset_mm=0.0,
                          dicom=study)


def compare_dcm2niix_module():
    """``pipelines/compare_dcm2niix.py`` loaded as a module (the dcm2niix comparison helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_dcm2niix", REPO / "pipelines" / "compare_dcm2niix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
