"""A small localizer study for the DICOM-results and PACS tests, and an independent SEG reader."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medseg.io import write_dicom_series, write_nifti
from tests.conftest import DATA


@functools.lru_cache(maxsize=1)
def _localizer():
    """Sampled once per test process (loading the 256^3 head takes most of the time)."""
    from medseg.segment.data import Subject

    volume, _ = Subject.load(DATA / "brain" / "fs-training" / "sub-09").sample_localizer(
        rotation_deg=12.0, midline_offset_mm=1.0)
    return volume.with_array(np.rint(np.asarray(volume.array)).astype(np.int16))


def localizer_study(root: Path, *, nifti: bool = False) -> str:
    """A real held-out head (sub-09) as a 5 x 5 mm sagittal localizer written as DICOM under
    ``root/loc`` (and as NIfTI under ``root/nifti`` when asked); returns its StudyInstanceUID."""
    subject_dir = DATA / "brain" / "fs-training" / "sub-09"
    if not subject_dir.exists():
        pytest.skip(f"needs shared data {subject_dir} (a real head with a corpus callosum)")
    volume = _localizer()
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
             "PatientName": "Secret^Person", "PatientID": "P1", "StudyDate": "20240105", "StudyID": "7"}
    write_dicom_series(volume.with_array(volume.array, dicom=study), root / "loc",
                       series_description="localizer sag", series_number=1)
    if nifti:
        write_nifti(volume, root / "nifti" / "localizer.nii.gz")
    return study["StudyInstanceUID"]


def seg_onto_grid(seg: pydicom.Dataset, sources: dict[str, pydicom.Dataset], affine: np.ndarray,
                  shape: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Each segment of a SEG as a mask on the grid of ``affine`` (array[i, j, k]), read with plain
    pydicom: frame position (PlanePositionSequence) -> slice index, and a check that each frame's
    source image lies at the same position."""
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    inverse = np.linalg.inv(affine)
    masks = {int(s.SegmentNumber): np.zeros(shape[:3], np.uint8) for s in seg.SegmentSequence}
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        position = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert np.allclose(np.array(sources[source_uid].ImagePositionPatient, float), position, atol=1e-3)
        ijk = inverse[:3, :3] @ position + inverse[:3, 3]
        assert np.allclose(ijk[:2], 0, atol=1e-3) and abs(ijk[2] - round(ijk[2])) < 1e-3
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        masks[number][:, :, int(round(ijk[2]))] = frame.T
    return masks
