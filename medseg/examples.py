"""Example images for notebooks and demos: real shared data when present, else built-in data.

The shared data folder is found through one setting, ``MEDSEG_DATA`` (default ``../shared/data``
beside the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import NoImagesError
from medseg.volume import Volume


def data_root() -> Path:
    return Path(os.environ.get("MEDSEG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def example_head() -> Volume:
    """A whole-head T1: the raw Siemens XA30 scanner T1 (shared data), else nilearn's ICBM152
    2009a template (brain only) when nilearn is installed."""
    from medseg.io import load_volume

    real = data_root() / "dicom" / "siemens-xa30-enhanced" / "5_anat-T1w_acq-tfl"
    if real.exists():
        return load_volume(real)
    head = icbm152_head()
    if head is None:
        raise NoImagesError("no example head: set MEDSEG_DATA to the shared data folder or "
                            "`pip install nilearn` for the ICBM152 template")
    return head


def icbm152_head() -> Volume | None:
    """nilearn's ICBM152 2009a T1 template (brain only), or None when nilearn is not installed."""
    from medseg.io import read_nifti

    try:
        import nilearn
    except ImportError:
        return None
    template = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    volume = read_nifti(template)
    return volume.with_array(volume.array, modality="MR", description="ICBM152 2009a T1")


def example_spine() -> Volume:
    """A long spine image: the PAM50 T2 template (C1..T12; shared data)."""
    from medseg.io import read_nifti

    path = data_root() / "spine" / "sct-testing" / "template" / "template" / "PAM50_small_t2.nii.gz"
    if not path.exists():
        raise NoImagesError(f"{path} not found: set MEDSEG_DATA to the shared data folder")
    return read_nifti(path)


def freesurfer_subjects_root() -> Path:
    return data_root() / "brain" / "fs-training"
