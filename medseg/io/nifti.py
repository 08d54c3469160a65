"""NIfTI and FreeSurfer MGZ through nibabel; RAS <-> LPS happens here and nowhere else."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from medseg.errors import CorruptFileError
from medseg.io.atomic import atomic_path
from medseg.volume import Volume, VolumeMeta

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def file_uid(path: str | os.PathLike) -> str:
    """A stable identifier for a non-DICOM study (hash of the absolute path)."""
    return "file-" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a NIfTI-1/2 or MGH/MGZ file (RAS on disk) into an LPS Volume."""
    import nibabel as nib  # (imported here: nibabel imports pydicom, see medseg.volume.axcodes)
    from nibabel.spatialimages import SpatialImage

    path = str(path)
    try:
        image = nib.load(path)
        if not isinstance(image, SpatialImage):  # e.g. CIFTI or GIFTI: no voxel grid, no affine
            raise TypeError(f"not a spatial image but {type(image).__name__}")
        array = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises several types on damaged files
        raise CorruptFileError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if array.ndim > 4:
        array = array.reshape(array.shape[:4] if array.shape[4:] == (1,) * (array.ndim - 4)
                              else (*array.shape[:3], -1))
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    meta = VolumeMeta(study_uid=file_uid(path), series_uid=file_uid(path), description=name,
                      source=path)
    return Volume(array, np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine, meta)


def write_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a Volume as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically. Returns the path."""
    path = Path(path)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    image = volume.to_nibabel()
    import nibabel as nib

    with atomic_path(path, suffix=suffix) as temp:
        nib.save(image, str(temp))
    return path
