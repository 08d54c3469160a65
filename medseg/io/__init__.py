"""Reading and writing images: DICOM (classic, enhanced, mosaic, compressed), NIfTI, MGZ.

The DICOM writer is imported when first used (PEP 562): reading DICOM headers (``medseg info``,
a scan of common files) does not import pydicom at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medseg.io.nifti import read_nifti, write_nifti
from medseg.io.scan import ScanResult, SeriesRef, Study, load_volume, scan

if TYPE_CHECKING:
    from medseg.io.dicom_write import write_dicom_series

__all__ = [
    "ScanResult",
    "SeriesRef",
    "Study",
    "load_volume",
    "read_nifti",
    "scan",
    "write_dicom_series",
    "write_nifti",
]


def __getattr__(name: str) -> Any:
    if name == "write_dicom_series":
        from medseg.io.dicom_write import write_dicom_series

        return write_dicom_series
    raise AttributeError(f"module 'medseg.io' has no attribute {name!r}")
