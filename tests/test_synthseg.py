"""SynthSeg-style training images from label maps: contrast stays T1-like, the head is modelled
outside the labelled brain, a label-only subject trains like a scanned one, and its target is the
CC alone."""

import numpy as np
import pytest

from medseg.segment.augment import AugmentConfig
from medseg.segment.data import PlanePose, Subject
from medseg.segment.dataset import make_sample
from medseg.segment.synthseg import GROUPS, draw_synth, group_map, outside_distance, synthesise
from medseg.synth.phantom import HeadPhantom, phantom_volume
from medseg.volume import Volume

# phantom tissue label -> aseg label (0 air, 1 scalp, 2 skull: outside the aseg, as FreeSurfer has them)
PHANTOM_TO_ASEG = np.array([0, 0, 0, 24, 3, 2, 4, 251], np.int32)


def phantom_aseg(seed: int = 0) -> Volume:
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = -59.5 * 1.5
    _, labels = phantom_volume(HeadPhantom(seed=seed), (120, 120, 120), affine)
    return Volume(PHANTOM_TO_ASEG[np.asarray(labels.array)], affine, labels.meta)


def index(name: str) -> int:
    return list(GROUPS).index(name) + 1


def test_groups_and_distance_outside_the_brain():
    labels = np.zeros((40, 40, 40), np.int32)
    labels[10:30, 10:30, 10:30] = 3  # cortex
    labels[14:26, 14:26, 14:26] = 2  # white matter
    labels[18:22, 18:22, 18:22] = 4  # ventricle
    labels[10:30, 19:21, 10:14] = 0  # a sulcus cut into the top
    groups = group_map(labels)
    assert groups[20, 20, 20] == index("ventricle_csf") and groups[15, 15, 15] == index("white_matter")
    assert groups[11, 11, 11] == index("cortex") and groups[0, 0, 0] == 0
    parcels = labels.copy()
    parcels[labels == 3] = 1035  # aparc+aseg: the cortex as parcels
    assert np.array_equal(group_map(parcels), groups)
    distance = outside_distance(labels)
    assert distance[20, 20, 20] == 0 and distance[20, 20, 13] == 1  # the sulcus: inside the envelope
    assert distance[20, 15, 9] == 1 and distance[20, 15, 4] == 6  # grows away from the brain


def test_synthesised_contrast_is_t1_like_for_every_draw():
    groups = np.array([[index("white_matter"), index("cortex"), index("ventricle_csf"), 0, 0, 0]], np.uint8)
    distance = np.array([[0, 0, 0, 2, 6, 12]], np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(200):
        params = draw_synth(rng, texture=(0.0, 0.0), head_fraction=1.0)
        params = params.__class__(**{**params.__dict__, "csf_mm": 2.5, "skull_mm": 5.0, "scalp_mm": 6.0})
        wm, cortex, csf, sulcal, skull, scalp = synthesise(groups, distance, params, np.zeros(groups.shape))[0]
        assert wm == 1.0 and wm > cortex > csf
        assert skull < 0.25 and sulcal < 0.45 and skull < scalp
    stripped = params.__class__(**{**params.__dict__, "head": False})
    assert synthesise(groups, distance, stripped, np.zeros(groups.shape))[0, 4:].max() == 0.0  # no skull, no scalp


def test_a_label_only_subject_trains_like_a_scanned_one():
    subject = Subject.from_labels("labels", phantom_aseg())
    assert subject.label_only and subject.brain is None and subject.groups is not None
    assert subject.cc_plane is not None and subject.cc_plane.sum() > 50
    cfg = AugmentConfig(negative_fraction=0.0, noise_only_fraction=0.0)
    first = make_sample([subject], cfg, 64, 4.0, np.random.default_rng(3))
    again = make_sample([subject], cfg, 64, 4.0, np.random.default_rng(3))
    other = make_sample([subject], cfg, 64, 4.0, np.random.default_rng(4))
    assert np.array_equal(first[0].numpy(), again[0].numpy())  # replayable from the generator
    assert not np.allclose(first[0].numpy(), other[0].numpy())
    assert first[1].sum() > 0  # the CC target on a plane near the midline
    # the image is synthesised, not the stored reference: the same pose differs per draw
    pose = PlanePose()
    a, label_a = subject.sample(pose, 64, 4.0, synth=draw_synth(np.random.default_rng(1)), rng=np.random.default_rng(1))
    b, label_b = subject.sample(pose, 64, 4.0, synth=draw_synth(np.random.default_rng(2)), rng=np.random.default_rng(2))
    assert np.array_equal(label_a, label_b) and not np.allclose(a, b)


def test_synthesis_needs_the_label_maps():
    aseg = phantom_aseg()
    image = Volume(np.asarray(aseg.array, np.float32), aseg.affine, aseg.meta)
    scanned = Subject.from_volumes("scan", image, aseg)
    with pytest.raises(ValueError, match="synthesis"):
        scanned.sample(PlanePose(), 64, 4.0, synth=draw_synth(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="generator"):
        Subject.from_labels("labels", aseg).sample(PlanePose(), 64, 4.0, synth=draw_synth(np.random.default_rng(0)))
    cfg = AugmentConfig(synth_fraction=0.5, negative_fraction=0.0, noise_only_fraction=0.0)
    with pytest.raises(ValueError, match="no label maps"):  # never its scan in place of a synthesis
        make_sample([scanned], cfg, 64, 4.0, np.random.default_rng(0))


def test_the_extra_aseg_is_a_label_only_subject_with_an_adult_cc():
    """The aseg without a T1 in the shared data: its CC-alone target is in the adult range and
    passes the plausibility gate, as the scanned subjects' targets do."""
    from medseg.positioning.angles import clean_mask
    from medseg.positioning.morphometry import measure, plausibility_problems
    from tests.conftest import data_path

    subject = Subject.load(data_path("brain", "extra-aseg"))
    assert subject.label_only and subject.name == "extra-aseg"
    plane = subject.plane(PlanePose(), 192, 1.25)
    _, target = subject.sample(PlanePose(), 192, 1.25)
    metrics = measure(clean_mask(target), plane, np.array([1.0, 0.0]))
    assert plausibility_problems(metrics) == [], plausibility_problems(metrics)


def test_a_texture_field_is_shared_by_the_planes_of_a_slab():
    """A thick slab averages planes of one texture field: its texture stays as drawn instead of
    shrinking by sqrt(planes)."""
    subject = Subject.from_labels("labels", phantom_aseg())
    params = draw_synth(np.random.default_rng(0), texture=(0.08, 0.08), head_fraction=0.0)
    flat = params.__class__(**{**params.__dict__, "texture": 0.0})
    thin, _ = subject.sample(PlanePose(slab_mm=1.0), 64, 4.0, synth=params, rng=np.random.default_rng(5))
    thick, _ = subject.sample(PlanePose(slab_mm=6.0), 64, 4.0, synth=params, rng=np.random.default_rng(5))
    thick_flat, _ = subject.sample(PlanePose(slab_mm=6.0), 64, 4.0, synth=flat, rng=np.random.default_rng(5))
    thin_flat, _ = subject.sample(PlanePose(slab_mm=1.0), 64, 4.0, synth=flat, rng=np.random.default_rng(5))
    brain = thin_flat > 0.9 * thin_flat.max()  # white matter
    assert np.std((thick - thick_flat)[brain]) > 0.8 * np.std((thin - thin_flat)[brain])


def test_synthesised_planes_line_up_with_the_scan_and_its_target():
    """On a real subject the image synthesised from its aseg lines up with its T1 on the same
    plane (best at no shift) and shares its target; the dark voxels of FreeSurfer's CC label that
    the cleaning dropped (septum, CSF) are synthesised dark, not as white matter."""
    from tests.conftest import data_path

    subject = Subject.load(data_path("brain", "fs-training", "sub-01"), synthesis=True)
    rng = np.random.default_rng(0)
    params = draw_synth(rng, texture=(0.0, 0.0), head_fraction=0.0)
    for pose in (PlanePose(), PlanePose(rotation_deg=20, slab_mm=5), PlanePose(offset_mm=3, tilt_lr_deg=4)):
        real, target = subject.sample(pose, 192, 1.25)
        synth, synth_target = subject.sample(pose, 192, 1.25, synth=params, rng=rng)
        assert np.array_equal(target, synth_target)
        brain = synth > 0
        corr = {shift: np.corrcoef(real[brain], np.roll(synth, shift, axis=(0, 1))[brain])[0, 1]
                for shift in ((0, 0), (0, 2), (2, 0), (0, -2), (-2, 0))}
        assert corr[(0, 0)] > 0.7 and max(corr, key=corr.__getitem__) == (0, 0), (pose, corr)
    # the label voxels the cleaning dropped as dark are CSF in the synthesis
    from medseg.io import read_nifti
    from medseg.segment.data import CC_LABELS
    from medseg.segment.synthseg import GROUP_INDEX

    labels = np.isin(np.asarray(read_nifti(data_path("brain", "fs-training", "sub-01", "aseg.mgz")).array), CC_LABELS)
    dropped = labels & (subject.cc == 0)
    assert (subject.groups[dropped] == GROUP_INDEX["ventricle_csf"]).sum() > 50
    assert (subject.groups[subject.cc > 0] == GROUP_INDEX["white_matter"]).all()
    # dark by the level the cleaning measured against (the raw label's white matter): the bright
    # voxels it dropped for their shape (fornix) stay white matter
    from medseg.segment.cc_alone import CC_INTENSITY_FRACTION

    dark = subject.image <= CC_INTENSITY_FRACTION * np.percentile(subject.image[labels], 75)
    assert (subject.groups[dropped & dark] == GROUP_INDEX["ventricle_csf"]).all()
    assert (subject.groups[dropped & ~dark] == GROUP_INDEX["white_matter"]).all()
    assert (dropped & ~dark).sum() > 20
