"""Sagittal stacks in any array axis order and any NIfTI orientation (written with nibabel):
routing, plane naming, and CC segmentation/positioning give the same answer for every layout."""

import itertools

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as nio

from medseg.batch.routing import route_study
from medseg.io import scan
from medseg.planes import is_sagittal_stack, left_right_axis, plane_name, slice_axis
from medseg.synth.phantom import HeadPhantom, phantom_volume, sagittal_affine
from medseg.volume import LPS_TO_RAS, Volume
from tests.conftest import REPO, data_path

# Every orientation of a 3D grid: 6 axis orders x 8 flips.
ORIENTATIONS = [np.array([[a, f] for a, f in zip(order, flips)], dtype=float)
                for order in itertools.permutations(range(3))
                for flips in itertools.product((1, -1), repeat=3)]


def reoriented(volume: Volume, ornt: np.ndarray) -> nib.Nifti1Image:
    """``volume`` as nibabel stores it with the axes permuted/flipped by ``ornt`` (no resampling)."""
    array = nio.apply_orientation(np.asarray(volume.array), ornt)
    affine = volume.ras_affine @ nio.inv_ornt_aff(ornt, volume.spatial_shape)
    return nib.Nifti1Image(np.ascontiguousarray(array), affine)


def from_nifti(image: nib.Nifti1Image) -> Volume:
    return Volume(np.asarray(image.dataobj), LPS_TO_RAS @ image.affine)


@pytest.fixture(scope="module")
def phantom_localizer():
    """A 5 x 5 mm sagittal phantom localizer on a coarse grid (routing needs no fine pixels)."""
    shape = (48, 48, 5)
    return phantom_volume(HeadPhantom(), shape, sagittal_affine(shape, (4.0, 4.0, 5.0)), noise=0.0)[0]


def test_routing_takes_a_sagittal_localizer_in_all_48_orientations(tmp_path, phantom_localizer):
    axial_shape = (48, 48, 12)
    axial_affine = np.diag([-4.0, -4.0, 5.0, 1.0])  # an axial 12-slice stack (RAS)
    axial = Volume(np.ones(axial_shape, np.int16), axial_affine)
    for n, ornt in enumerate(ORIENTATIONS):
        nib.save(reoriented(phantom_localizer, ornt), tmp_path / f"loc{n:02d}.nii.gz")
        nib.save(reoriented(axial, ornt), tmp_path / f"ax{n:02d}.nii.gz")
    found = scan(tmp_path)
    assert len(found.studies) == 2 * len(ORIENTATIONS)
    orientations = set()
    for study in found.studies:
        (ref,) = study.series
        route = route_study(study)
        localizer = ref.description.startswith("loc")
        assert [r is ref for r in route.brain] == ([True] if localizer else []), (ref.description, ref.shape)
        if localizer:
            orientations.add(ref.orientation)
            assert plane_name(ref.affine, ref.shape) == "sag"
            assert slice_axis(ref.affine, ref.shape) == int(np.argmin(ref.shape))
            assert slice_axis(ref.affine, ref.shape) == left_right_axis(ref.affine)[0]
        else:
            assert plane_name(ref.affine, ref.shape) == "ax" and route.skipped
    assert len(orientations) == 48  # all of them really were different layouts


def test_plane_name_follows_the_slice_axis_not_the_third_axis():
    lr_first = np.diag([-5.0, 1.0, 1.0, 1.0])  # LPS: slices along x (left-right), first axis
    assert is_sagittal_stack(lr_first, (7, 256, 256))
    assert plane_name(lr_first, (7, 256, 256)) == "sag"
    assert plane_name(np.diag([1.0, 1.0, 5.0, 1.0]), (256, 256, 7)) == "ax"
    # a near-isotropic volume keeps the DICOM convention (third axis)
    assert slice_axis(np.eye(4), (176, 256, 256)) == 2
    # contiguous thin slices, few of them
    assert slice_axis(np.eye(4), (256, 20, 256)) == 1


# ---- the CC model on a real held-out head (skipped without data or model) -------------------

needs_model = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                 reason="no shipped CC model")


@pytest.fixture(scope="module")
def segmenter():
    from medseg.segment.infer import CCSegmenter

    return CCSegmenter()


@pytest.fixture(scope="module")
def real_localizer():
    from medseg.segment.data import Subject

    head = Subject.load(data_path("brain", "fs-training", "sub-09"))
    volume, _ = head.sample_localizer(rotation_deg=12.0, midline_offset_mm=-3.0)  # midline off-centre
    return Volume(np.rint(np.asarray(volume.array)).astype(np.int16), volume.affine, volume.meta)


def _final_angle(segmentation) -> float:
    from medseg.positioning.angles import localize
    from medseg.positioning.pipeline import OUTLINE_SMOOTHING_MM

    return localize(segmentation.mask2d, segmentation.plane, probability=segmentation.probability2d,
                    smoothing_mm=OUTLINE_SMOOTHING_MM).final.angle_deg


def _mask_points(mask: Volume) -> np.ndarray:
    """The LPS centres of the mask's voxels, sorted (a layout-free description of the mask)."""
    points = mask.world_coordinates(np.argwhere(np.asarray(mask.array) > 0))
    return points[np.lexsort(np.round(points, 3).T)]


# Transposed in-plane axes change the order of OpenCV's contour points and of the Huber fit.
SAME_ANGLE_DEG = 0.1


@needs_model
def test_localizer_segmentation_is_the_same_in_every_axis_order(segmenter, real_localizer):
    base = segmenter.segment(real_localizer)
    angle, points = _final_angle(base), _mask_points(base.mask)
    # every axis order, unflipped and with all three axes flipped (12 of the 48 layouts)
    for ornt in [o for o in ORIENTATIONS if len(set(o[:, 1])) == 1]:
        volume = from_nifti(reoriented(real_localizer, ornt))
        result = segmenter.segment(volume)
        assert result.kind == "localizer"
        assert result.mask.shape == volume.shape  # the input's own array layout
        assert abs(_final_angle(result) - angle) < SAME_ANGLE_DEG, volume.orientation
        np.testing.assert_allclose(_mask_points(result.mask), points, atol=1e-3)


@needs_model
@pytest.mark.parametrize("codes", ["RAS", "ILP"])  # fslreorient2std / left-right second, flipped
def test_positioning_of_a_reoriented_localizer_nifti(tmp_path, segmenter, real_localizer, codes):
    from medseg.positioning.pipeline import position_volume

    base = position_volume(real_localizer, segmenter)
    ornt = nio.ornt_transform(nio.io_orientation(real_localizer.ras_affine), nio.axcodes2ornt(tuple(codes)))
    nib.save(reoriented(real_localizer, ornt), tmp_path / "localizer.nii.gz")
    (study,) = scan(tmp_path).studies
    (ref,) = route_study(study).brain
    assert ref.orientation == codes
    result = position_volume(ref.load(), segmenter)
    assert result.segmentation.kind == "localizer"
    assert result.localization.final.angle_deg == pytest.approx(base.localization.final.angle_deg,
                                                                abs=SAME_ANGLE_DEG)
    # N4 fits its spline on the stored grid: a voxel or two of the mask may differ
    a, b = ({tuple(p) for p in np.round(_mask_points(r.segmentation.mask), 2)} for r in (result, base))
    assert 2 * len(a & b) / (len(a) + len(b)) > 0.99


@needs_model
def test_volume_segmentation_is_the_same_in_any_axis_order(segmenter):
    from medseg.io import load_volume

    volume = load_volume(data_path("dicom", "siemens-xa30-enhanced", "5_anat-T1w_acq-tfl"))
    base = segmenter.segment(volume)
    for order, flip in (((1, 2, 0), 2),):  # axes permuted, one flipped
        ornt = np.array([[a, -1.0 if a == flip else 1.0] for a in order])
        other = from_nifti(reoriented(volume, ornt))
        result = segmenter.segment(other)
        assert result.kind == "volume" and result.mask.shape == other.shape
        assert abs(_final_angle(result) - _final_angle(base)) < SAME_ANGLE_DEG, other.orientation
        np.testing.assert_allclose(result.midsagittal_point, base.midsagittal_point, atol=0.05)
