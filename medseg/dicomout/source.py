"""The source series of a result: its DICOM datasets and where each frame lies in the Volume grid.

A mask in the input grid (``array[i, j, k]``, ``i`` along a row, ``j`` down the rows) is mapped
onto the source frames by each frame's ImagePositionPatient: ``k = affine^-1 @ IPP``. A frame that
does not fall on a slice of the grid (or whose orientation differs) is an error, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medseg.errors import DicomOutputError as DicomOutputError  # importable from here too (medseg.errors)
from medseg.geometry import as_vec3


@dataclass(frozen=True)
class SourceFrame:
    dataset: Dataset
    frame: int | None  # 0-based frame of a multi-frame image, None for a single-frame image
    slice_index: int  # k in the Volume grid
    position: tuple[float, float, float]  # ImagePositionPatient of the frame
    orientation: tuple[float, ...]  # ImageOrientationPatient of the frame


# Type 2 patient/study attributes that the derived objects copy from the source: when a source
# lacks one, it is set empty in memory ("unknown", as DICOM defines it), never invented.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


# What a SEG/SR/SC needs from each source to reference it (study, series, instance, class).
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def read_sources(files: Sequence[str | Path]) -> list[Dataset]:
    """The source datasets (pixel data left out: only headers are needed; files are not changed)."""
    if not files:
        raise DicomOutputError("no source DICOM files (NIfTI input has none)")
    datasets: list[Dataset] = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise DicomOutputError(f"cannot read source file {Path(path).name}: {exc}") from exc
        missing = [k for k in REQUIRED_UIDS if not str(ds.get(k, "") or "").strip()]
        if missing:  # the derived objects reference the source by these: nothing can stand in
            raise DicomOutputError(f"source file {Path(path).name} lacks {', '.join(missing)}: "
                                   "a DICOM result cannot reference it")
        _share_constant_groups(ds)
        for keyword in TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
        datasets.append(ds)
    return datasets


def _frame_geometry(ds: Dataset, frame: int | None) -> tuple[np.ndarray, np.ndarray]:
    if frame is None:
        return np.array(ds.ImagePositionPatient, float), np.array(ds.ImageOrientationPatient, float)
    item = ds.PerFrameFunctionalGroupsSequence[frame]
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    position = item.PlanePositionSequence[0].ImagePositionPatient
    orientation = (item if "PlaneOrientationSequence" in item else shared).PlaneOrientationSequence[0]
    return np.array(position, float), np.array(orientation.ImageOrientationPatient, float)


def _share_constant_groups(ds: Dataset) -> None:
    """Enhanced images may repeat PixelMeasures/PlaneOrientation in every frame instead of sharing
    them; highdicom reads them from the shared groups, so an identical per-frame value is copied
    there (in memory). Differing values are left alone (highdicom then refuses, and says why)."""
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames:
        return
    if "SharedFunctionalGroupsSequence" not in ds:
        ds.SharedFunctionalGroupsSequence = [Dataset()]
    shared = ds.SharedFunctionalGroupsSequence[0]
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if keyword in shared or not all(keyword in f for f in frames):
            continue
        values = {repr(f[keyword].value[0]) for f in frames}
        if len(values) == 1:
            setattr(shared, keyword, frames[0][keyword].value)


def frame_thickness(ds: Dataset, frame: int | None) -> float | None:
    """SliceThickness of a frame (per-frame or shared functional groups for enhanced images)."""
    if frame is None:
        return float(ds.SliceThickness) if ds.get("SliceThickness") else None
    for group in (ds.PerFrameFunctionalGroupsSequence[frame], ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]):
        if "PixelMeasuresSequence" in group and group.PixelMeasuresSequence[0].get("SliceThickness"):
            return float(group.PixelMeasuresSequence[0].SliceThickness)
    return None


def map_frames(datasets: Sequence[Dataset], affine: np.ndarray, shape: tuple[int, ...],
               tolerance: float = 0.05) -> list[SourceFrame]:
    """Each source frame with its slice index in the grid of ``affine`` / ``shape``.

    Raises:
        DicomOutputError: a frame off the grid (position or orientation), or a matrix mismatch.
    """
    inverse = np.linalg.inv(np.asarray(affine, float))
    direction = affine[:3, :2] / np.linalg.norm(affine[:3, :2], axis=0)
    frames = []
    for ds in datasets:
        count = int(ds.get("NumberOfFrames", 1) or 1)
        if (int(ds.Columns), int(ds.Rows)) != tuple(shape[:2]):
            raise DicomOutputError(f"source matrix {ds.Columns}x{ds.Rows} differs from the grid {shape[:2]}")
        for frame in ([None] if count == 1 and "PerFrameFunctionalGroupsSequence" not in ds else range(count)):
            position, orientation = _frame_geometry(ds, frame)
            ijk = inverse[:3, :3] @ position + inverse[:3, 3]
            k = int(round(ijk[2]))
            if (np.abs(ijk[:2]).max() > tolerance or abs(ijk[2] - k) > tolerance or not 0 <= k < shape[2]
                    or np.abs(orientation - direction.T.ravel()).max() > 1e-3):
                raise DicomOutputError("a source frame does not lie on the result's grid")
            frames.append(SourceFrame(ds, frame, k, as_vec3(position), tuple(map(float, orientation))))
    return frames
