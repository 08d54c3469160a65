import dataclasses

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.volume import Volume, VolumeMeta
from tests.conftest import rotation


def oblique_volume(shape=(12, 10, 8)):
    affine = np.eye(4)
    affine[:3, :3] = rotation("z", 30) @ rotation("x", -12) @ np.diag([0.8, 1.2, 2.5])
    affine[:3, 3] = [10.0, -20.0, 5.5]
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(array, affine, VolumeMeta(modality="MR", description="oblique"))


def test_volume_is_immutable():
    volume = oblique_volume()
    with pytest.raises(ValueError):
        volume.array[0, 0, 0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        volume.affine = np.eye(4)


def test_derived_geometry():
    volume = oblique_volume()
    np.testing.assert_allclose(volume.spacing, [0.8, 1.2, 2.5])
    np.testing.assert_allclose(volume.origin, [10.0, -20.0, 5.5])
    np.testing.assert_allclose(volume.direction.T @ volume.direction, np.eye(3), atol=1e-12)
    point = volume.world_coordinates([[3, 4, 5]])
    np.testing.assert_allclose(volume.voxel_coordinates(point), [[3, 4, 5]], atol=1e-9)


def test_orientation_codes_follow_nibabel_convention():
    # LPS identity affine: i -> L, j -> P, k -> S  ->  nibabel code "LPS"
    volume = Volume(np.zeros((2, 2, 2)), np.eye(4))
    assert volume.orientation == "LPS"
    flipped = Volume(np.zeros((2, 2, 2)), np.diag([-1.0, -1.0, 1.0, 1.0]))
    assert flipped.orientation == "RAS"


def test_axcodes_are_nibabels():
    """volume.axcodes (nibabel's io_orientation, ported) gives aff2axcodes' codes on random
    oblique, flipped, anisotropic and near-45-degree affines, and on every axis permutation."""
    import itertools

    import nibabel as nib

    from medseg.volume import LPS_TO_RAS, axcodes

    rng = np.random.default_rng(3)
    affines = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = np.eye(3)[:, order] * signs * [0.9, 1.0, 4.0]
            affines.append(affine)
    for _ in range(300):
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        affine = np.eye(4)
        affine[:3, :3] = rotation * rng.uniform(0.3, 6.0, 3)
        affine[:3, 3] = rng.normal(0, 50, 3)
        affines.append(affine)
    tilt = np.radians(44.9)  # close to a tie between two world axes
    affines.append(np.array([[np.cos(tilt), -np.sin(tilt), 0, 0], [np.sin(tilt), np.cos(tilt), 0, 0],
                             [0, 0, 1, 0], [0, 0, 0, 1]]))
    for affine in affines:
        assert axcodes(affine) == "".join(nib.aff2axcodes(LPS_TO_RAS @ affine)), affine


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LIA", "PSR"])
def test_reorient_keeps_every_voxel_at_its_world_position(codes):
    volume = oblique_volume()
    out = volume.reorient(codes)
    assert out.orientation == codes
    # Every value must sit at the same world coordinate as before.
    idx = np.indices(out.spatial_shape).reshape(3, -1).T
    world = out.world_coordinates(idx)
    src = np.rint(volume.voxel_coordinates(world)).astype(int)
    np.testing.assert_array_equal(out.array.reshape(-1), volume.array[src[:, 0], src[:, 1], src[:, 2]])


def test_with_array_checks_shape_and_keeps_grid():
    volume = oblique_volume()
    out = volume.with_array(volume.array * 2, description="doubled")
    assert out.meta.description == "doubled"
    np.testing.assert_array_equal(out.affine, volume.affine)
    with pytest.raises(ValueError):
        volume.with_array(np.zeros((3, 3, 3)))


def test_sitk_round_trip_and_physical_points():
    volume = oblique_volume()
    image = volume.to_sitk()
    # SimpleITK index order is (i, j, k); physical space is LPS like ours.
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((3, 4, 5)),
                               volume.world_coordinates([[3, 4, 5]])[0], atol=1e-9)
    assert image.GetPixel(3, 4, 5) == volume.array[3, 4, 5]
    back = Volume.from_sitk(image)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-9)
    np.testing.assert_array_equal(back.array, volume.array)


def test_nibabel_round_trip_converts_ras_once():
    volume = oblique_volume()
    image = volume.to_nibabel()
    ras = image.affine @ np.array([3, 4, 5, 1.0])
    lps = volume.world_coordinates([[3, 4, 5]])[0]
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-6)
    back = Volume.from_nibabel(nib.Nifti1Image(np.asarray(volume.array), image.affine))
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-9)


def test_resample_to_identity_grid_is_exact_and_labels_stay_labels():
    volume = oblique_volume()
    same = volume.resample_to(volume)
    np.testing.assert_allclose(same.array, volume.array, atol=1e-3)
    labels = volume.with_array((volume.array % 3).astype(np.uint8)).as_label()
    # A grid shifted by half a voxel forces interpolation: labels must keep only their values.
    shifted = Volume(np.zeros((12, 10, 8)), volume.affine @ np.array(
        [[1, 0, 0, 0.5], [0, 1, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    out = labels.resample_to(shifted)
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) <= {0, 1, 2}
    linear = volume.resample_to(shifted)
    assert not np.allclose(linear.array, volume.array)


def test_resample_matches_sitk_world_mapping():
    volume = oblique_volume((20, 18, 16))
    target = Volume(np.zeros((10, 10, 10)), np.diag([2.0, 2.0, 2.0, 1.0]) @ np.eye(4)
                    + np.array([[0, 0, 0, -5], [0, 0, 0, -25], [0, 0, 0, 0], [0, 0, 0, 0]]))
    out = volume.resample_to(target, interpolation="linear")
    # Check one interior voxel by hand: its world point, mapped back into the source, interpolated.
    reference = sitk.Resample(volume.to_sitk(), target.to_sitk())
    checked = 0
    for idx in np.ndindex(target.spatial_shape):
        src = volume.voxel_coordinates(target.world_coordinates([idx]))[0]
        if np.all(src >= 0) and np.all(src <= np.array(volume.spatial_shape) - 1):
            assert out.array[idx] == pytest.approx(reference.GetPixel(*map(int, idx)), abs=1e-3)
            # and by hand: trilinear value of the source at that point (the array is linear in i,j,k)
            i, j, k = src
            expected = (i * volume.shape[1] + j) * volume.shape[2] + k
            assert out.array[idx] == pytest.approx(expected, abs=1e-2)
            checked += 1
    assert checked > 10


def test_patient_attributes_stay_out_of_repr():
    volume = Volume(np.zeros((2, 2, 2)), np.eye(4), VolumeMeta(dicom={"PatientName": "Secret^Name"}))
    assert "Secret" not in repr(volume)
    assert volume.meta.dicom["PatientName"] == "Secret^Name"
