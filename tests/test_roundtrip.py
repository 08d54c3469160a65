"""Geometry round trips: a voxel keeps its world coordinate through every conversion."""

import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medseg.io import read_nifti, scan, write_dicom_series, write_nifti
from medseg.volume import Volume, VolumeMeta
from tests.conftest import rotation


def test_dicom_to_volume_to_nifti_to_volume(oblique_series, tmp_path):
    folder, truth, iop, ipps, pixel = oblique_series
    volume = scan(folder).series[0].load()
    path = write_nifti(volume, tmp_path / "out.nii.gz")
    back = read_nifti(path)
    np.testing.assert_array_equal(back.array, volume.array)
    # The DICOM position of voxel (i, j, k), computed from the tags, is kept through NIfTI.
    row_cos, col_cos = np.asarray(iop[:3]), np.asarray(iop[3:])
    for i, j, k in [(0, 0, 0), (7, 13, 6), (19, 23, 8)]:
        dicom_world = ipps[k] + i * pixel[1] * row_cos + j * pixel[0] * col_cos
        np.testing.assert_allclose(back.world_coordinates([[i, j, k]])[0], dicom_world, atol=1e-4)
    # and nibabel sees the same point in RAS
    ras = nib.load(path).affine @ np.array([7, 13, 6, 1.0])
    lps = ipps[6] + 7 * pixel[1] * row_cos + 13 * pixel[0] * col_cos
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)


def _oblique_float_volume():
    affine = np.eye(4)
    affine[:3, :3] = rotation("y", 25) @ rotation("x", 10) @ np.diag([1.1, 0.7, 3.0])
    affine[:3, 3] = [-30.0, 12.5, 44.0]
    array = np.random.default_rng(3).normal(100, 30, size=(14, 11, 6)).astype(np.float32)
    meta = VolumeMeta(modality="MR", study_uid="1.2.3.4.5", series_uid="1.2.3.4.6",
                      dicom={"StudyInstanceUID": "1.2.3.4.5", "PatientID": "X1"})
    return Volume(array, affine, meta)


def test_derived_dicom_series_round_trip(tmp_path):
    volume = _oblique_float_volume()
    paths = write_dicom_series(volume, tmp_path / "derived", series_description="derived test",
                               series_number=901, derivation="unit test")
    assert len(paths) == 6 and all(p.exists() for p in paths)
    ds = pydicom.dcmread(paths[0])
    assert ds.StudyInstanceUID == "1.2.3.4.5"
    assert ds.SeriesInstanceUID != "1.2.3.4.6"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3.4.6"
    assert "DERIVED" in ds.ImageType and ds.PatientID == "X1"
    back = scan(tmp_path / "derived").series[0].load()
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-5)
    step = (volume.array.max() - volume.array.min()) / 65535
    np.testing.assert_allclose(back.array, volume.array, atol=step)


def test_derived_series_refuses_to_overwrite(tmp_path):
    volume = _oblique_float_volume()
    write_dicom_series(volume, tmp_path / "d")
    with pytest.raises(FileExistsError):
        write_dicom_series(volume, tmp_path / "d")


def test_dcm2niix_reads_our_derived_series_with_the_same_geometry(tmp_path):
    dcm2niix = pytest.importorskip("dcm2niix")
    from pathlib import Path

    binary = Path(dcm2niix.__file__).parent / "dcm2niix"
    if not binary.exists():
        pytest.skip("dcm2niix binary not installed")
    volume = _oblique_float_volume()
    write_dicom_series(volume, tmp_path / "d")
    subprocess.run([str(binary), "-z", "n", "-f", "out", "-o", str(tmp_path), str(tmp_path / "d")],
                   check=True, capture_output=True)
    theirs = read_nifti(tmp_path / "out.nii")
    # Compare the world position of each of their voxels with ours and the values there.
    idx = np.indices(theirs.spatial_shape).reshape(3, -1).T
    ours_idx = volume.voxel_coordinates(theirs.world_coordinates(idx))
    np.testing.assert_allclose(ours_idx, np.rint(ours_idx), atol=1e-3)
    ours_idx = np.rint(ours_idx).astype(int)
    values = volume.array[ours_idx[:, 0], ours_idx[:, 1], ours_idx[:, 2]]
    step = (volume.array.max() - volume.array.min()) / 65535
    np.testing.assert_allclose(np.asarray(theirs.array, dtype=np.float64).reshape(-1), values,
                               atol=2 * step)
