"""Reading and writing images: DICOM (classic, enhanced, mosaic, compressed), NIfTI, MGZ."""

from medseg.io.dicom_write import write_dicom_series
from medseg.io.nifti import read_nifti, write_nifti
from medseg.io.scan import ScanResult, SeriesRef, Study, load_volume, scan

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
