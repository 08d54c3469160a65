"""Every real series under shared data loads, and agrees with dcm2niix (skipped without the data)."""


import numpy as np

from medseg.io import read_nifti, scan
from tests.conftest import compare_dcm2niix_module, data_path


def _compare_module():
    return compare_dcm2niix_module()


def test_every_real_series_loads():
    root = data_path("dicom")
    result = scan(root)
    assert not result.errors
    assert len(result.series) >= 20
    for ref in result.series:
        volume = ref.load()
        assert volume.shape == ref.shape
        assert np.isfinite(np.asarray(volume.array, dtype=np.float64)).all()


def test_three_plane_localizer_splits_into_three_stacks():
    root = data_path("dicom", "ge-3plane-localizer", "01_3_Plane_Localizer_FF")
    refs = scan(root).series
    assert sorted(r.label for r in refs) == ["ax", "cor", "sag"]
    assert all(r.shape == (256, 256, 7) for r in refs)
    assert all(abs(r.spacing[2] - 15.0) < 1e-6 for r in refs)


def test_enhanced_multiframe_and_mosaic_shapes():
    t1 = scan(data_path("dicom", "siemens-xa30-enhanced", "5_anat-T1w_acq-tfl")).series[0]
    assert sorted(t1.shape) == [96, 128, 128]
    mosaic = scan(data_path("dicom", "transfer-syntaxes", "In", "1.dcm")).series[0]
    assert mosaic.shape == (64, 64, 35)


def test_all_transfer_syntaxes_decode_to_the_same_pixels():
    root = data_path("dicom", "transfer-syntaxes", "In")
    arrays = [ref.load().array for ref in scan(root).series]
    assert len(arrays) == 9
    for array in arrays[1:]:
        np.testing.assert_array_equal(array, arrays[0])


def test_agreement_with_dcm2niix():
    root = data_path("dicom")
    module = _compare_module()
    rows = []
    for folder in module.series_folders(root):
        rows.extend(module.compare_folder(folder, root)[0])
    assert len(rows) >= 20
    bad = [r for r in rows if not r["ok"]]
    assert not bad, bad


def test_freesurfer_mgz_is_read_in_lps():
    path = data_path("brain", "fs-training", "sub-01", "aseg.mgz")
    volume = read_nifti(path)
    assert volume.shape == (256, 256, 256)
    assert volume.orientation == "LIA"
    assert np.isin(np.unique(volume.array), [251, 252, 253, 254, 255]).sum() == 5
