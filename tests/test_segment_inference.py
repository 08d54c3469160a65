"""The shipped CC model through onnxruntime on real images (skipped without shared data)."""

import numpy as np
import pytest

from medseg.segment.evaluate import dice
from tests.conftest import REPO, data_path

pytestmark = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                reason="no shipped CC model")

# FreeSurfer CC labels of the 7 labelled subjects span 727-1175 mm2 on their mid-sagittal plane.
REFERENCE_AREA_MM2 = (600.0, 1300.0)


@pytest.fixture(scope="module")
def segmenter():
    from medseg.segment.infer import CCSegmenter

    return CCSegmenter()


def test_raw_scanner_t1_gives_a_plausible_cc_and_plan(segmenter):
    from medseg.io import load_volume
    from medseg.positioning.pipeline import position_volume

    volume = load_volume(data_path("dicom", "siemens-xa30-enhanced", "5_anat-T1w_acq-tfl"))
    result = position_volume(volume, segmenter)
    assert result.segmentation.kind == "volume"
    assert REFERENCE_AREA_MM2[0] < result.measurements.area_mm2 < REFERENCE_AREA_MM2[1]
    assert result.localization.consistent
    assert abs(np.dot(result.segmentation.midsagittal_normal, [1, 0, 0])) > 0.95
    assert result.segmentation.mask.shape == volume.shape  # mask in the input's own grid
    assert result.segmentation.mask.array.sum() > 100


@pytest.mark.parametrize("subject", ["sub-08", "sub-09"])
def test_localizer_slice_choice_and_dice_on_held_out_heads(segmenter, subject):
    from medseg.segment.data import Subject

    head = Subject.load(data_path("brain", "fs-training", subject))
    volume, labels = head.sample_localizer(rotation_deg=20.0, midline_offset_mm=1.0)
    result = segmenter.segment(volume, localizer=True)
    assert result.slice_index == 2  # the slice 1 mm from the midline, not a lateral one
    assert dice(result.mask2d, labels[2]) > 0.9


def test_phantom_localizer_has_no_cc(segmenter):
    from medseg.io import scan
    from medseg.segment.infer import NoCCFoundError

    (sagittal,) = [r for r in scan(data_path("dicom", "ge-3plane-localizer", "05_3_Plane_Localizer_HF")).series
                   if r.label == "sag"]
    with pytest.raises(NoCCFoundError):
        segmenter.segment(sagittal.load())


def test_model_angles_follow_the_head_in_the_scanner(segmenter):
    """The same held-out head pitched by phi in the scanner (localizer axes fixed): the final
    angle changes by the head's known motion within 1 deg, model and all."""
    from medseg.geometry import physical_angle
    from medseg.positioning.angles import localize
    from medseg.positioning.pipeline import OUTLINE_SMOOTHING_MM
    from medseg.segment.data import Subject
    from medseg.volume import Volume

    head = Subject.load(data_path("brain", "fs-training", "sub-09"))
    reference, _ = head.sample_localizer(rotation_deg=0.0, midline_offset_mm=1.0)

    def final(volume):
        seg = segmenter.segment(volume, localizer=True)
        return localize(seg.mask2d, seg.plane, probability=seg.probability2d,
                        smoothing_mm=OUTLINE_SMOOTHING_MM).final

    start = final(reference)
    for phi in (-30, 15, 30):
        sampled, _ = head.sample_localizer(rotation_deg=phi, midline_offset_mm=1.0)
        moved = final(Volume(sampled.array, reference.affine, sampled.meta))
        motion = reference.affine[:3, :3] @ np.linalg.inv(sampled.affine[:3, :3])
        expected = physical_angle(motion @ np.array(start.direction_lps))
        assert abs(expected - start.angle_deg) > 10  # the head really moved
        assert abs(moved.angle_deg - expected) < 1.0, (phi, moved.angle_deg, expected)
