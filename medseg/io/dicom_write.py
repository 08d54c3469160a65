"""Writing a Volume as a DICOM derived series (one classic file per slice).

New Series/SOP Instance UIDs; the study, patient and frame of reference of the source are kept so
that a PACS files the result beside its source; geometry (ImagePositionPatient per slice,
ImageOrientationPatient, PixelSpacing, slice spacing) comes from the Volume's affine.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg import __version__
from medseg.volume import Volume

SOP_CLASSES = {
    "MR": pydicom.uid.MRImageStorage,
    "CT": pydicom.uid.CTImageStorage,
}
SECONDARY_CAPTURE = pydicom.uid.SecondaryCaptureImageStorage


def _to_stored(array: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """Stored 16-bit values plus RescaleSlope/Intercept that recover ``array``."""
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_):
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low >= 0 and high <= 65535:
            return array.astype(np.uint16), 1.0, 0.0, False
        if low >= -32768 and high <= 32767:
            return array.astype(np.int16), 1.0, 0.0, True
    values = array.astype(np.float64)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.clip(np.rint((np.nan_to_num(values, nan=lo) - lo) / slope), 0, 65535)
    return stored.astype(np.uint16), slope, lo, False


def _ds_number(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def write_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike[str],
    *,
    series_description: str = "medseg derived",
    series_number: int = 9000,
    derivation: str = "",
    reference: Volume | None = None,
) -> list[Path]:
    """Write a 3D Volume as a derived DICOM series into ``out_dir`` (created; must not exist).

    The folder appears complete or not at all (written beside it, then renamed).

    Args:
        volume: the image; its ``meta.dicom`` study/patient attributes are copied when present.
        out_dir: destination folder.
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series.
        derivation: DerivationDescription text.
        reference: the source image (defaults to ``volume``): referenced by SeriesInstanceUID.

    Returns:
        The written file paths, in slice order.
    """
    if volume.array.ndim != 3:
        raise ValueError(f"write_dicom_series writes 3D volumes; got shape {volume.shape}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists; refusing to overwrite a DICOM series")
    direction, spacing = volume.direction, volume.spacing
    row_cos, col_cos = direction[:, 0], direction[:, 1]
    if abs(float(np.dot(row_cos, col_cos))) > 1e-4:
        raise ValueError("DICOM needs orthogonal row/column directions; resample the volume first")
    reference = reference or volume
    study = dict(reference.meta.dicom or {})
    study.update({k: v for k, v in (volume.meta.dicom or {}).items() if v is not None})
    stored, slope, intercept, signed = _to_stored(np.asarray(volume.array))

    series_uid = generate_uid()
    study_uid = str(study.get("StudyInstanceUID") or volume.meta.study_uid or generate_uid())
    if not study_uid[:1].isdigit():
        study_uid = generate_uid()
    frame_uid = str(study.get("FrameOfReferenceUID") or volume.meta.frame_of_reference_uid
                    or generate_uid())
    modality = volume.meta.modality or "MR"
    sop_class = SOP_CLASSES.get(modality, SECONDARY_CAPTURE)
    now = _dt.datetime.now()
    slice_step = volume.affine[:3, 2]
    normal = np.cross(row_cos, col_cos)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    paths = []
    try:
        for k in range(volume.shape[2]):
            position = volume.affine[:3, :3] @ np.array([0.0, 0.0, k]) + volume.affine[:3, 3]
            ds = Dataset()
            for keyword, value in study.items():
                if keyword not in ("StudyInstanceUID", "FrameOfReferenceUID") and value is not None:
                    setattr(ds, keyword, value)
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = generate_uid()
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.Modality = modality
            ds.SeriesNumber = int(series_number)
            ds.InstanceNumber = k + 1
            ds.SeriesDescription = series_description[:64]
            ds.ImageType = ["DERIVED", "SECONDARY"]
            if derivation:
                ds.DerivationDescription = derivation[:1024]
            ds.SoftwareVersions = f"medseg {__version__}"
            ds.ContentDate = now.strftime("%Y%m%d")
            ds.ContentTime = now.strftime("%H%M%S")
            if reference.meta.series_uid and reference.meta.series_uid[:1].isdigit():
                item = Dataset()
                item.SeriesInstanceUID = reference.meta.series_uid
                ds.ReferencedSeriesSequence = Sequence([item])
            ds.ImagePositionPatient = [_ds_number(v) for v in position]
            ds.ImageOrientationPatient = [_ds_number(v) for v in (*row_cos, *col_cos)]
            ds.PixelSpacing = [_ds_number(spacing[1]), _ds_number(spacing[0])]
            ds.SliceThickness = _ds_number(float(np.linalg.norm(slice_step)))
            ds.SpacingBetweenSlices = _ds_number(float(np.linalg.norm(slice_step)))
            ds.SliceLocation = _ds_number(float(np.dot(position, normal)))
            ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 1 if signed else 0
            ds.RescaleSlope = _ds_number(slope)
            ds.RescaleIntercept = _ds_number(intercept)
            ds.RescaleType = "US"
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = sop_class
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
            path = temp_dir / f"{k + 1:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(out_dir / path.name)
        os.replace(temp_dir, out_dir)
    finally:
        if temp_dir.exists():
            shutil.rmtree(temp_dir, ignore_errors=True)
    return paths
