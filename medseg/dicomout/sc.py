"""Secondary capture (RGB, highdicom) of a picture (``qc.png``, the spine ``preview.png``).

Patient and study attributes come only from the source dataset (``SCImage.from_ref_dataset``);
new series and instance UIDs; the pictures show anterior at the left and superior at the
top (PatientOrientation P\\F); the source's FrameOfReferenceUID is kept so that viewers group the
picture with its source.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medseg.dicomout.source import DicomOutputError

SC_SERIES_NUMBER = 9202


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DicomOutputError(f"cannot read picture {Path(path).name}")
    return np.ascontiguousarray(image[:, :, ::-1])  # OpenCV BGR -> RGB


def build_secondary_capture(picture: Path, source: Dataset, *, description: str,
                            series_number: int = SC_SERIES_NUMBER) -> Dataset:
    pixels = read_rgb(picture)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=("P", "F"), series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="medseg", transfer_syntax_uid="1.2.840.10008.1.2.1")
    sc.SeriesDescription = description[:64]
    if "FrameOfReferenceUID" in source:
        sc.FrameOfReferenceUID = source.FrameOfReferenceUID
    return sc
