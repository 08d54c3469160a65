"""The CC-alone training target and the adult-range plausibility gate."""

from __future__ import annotations

import numpy as np

from medseg.geometry import Plane
from medseg.positioning.morphometry import measure, plausibility_problems
from medseg.segment.cc_alone import corpus_callosum_alone

SIZE = 160


def arc_cc(genu: float = 5.5, body: float = 3.0, splenium: float = 6.5, shape=(SIZE, SIZE)) -> np.ndarray:
    """A CC-like arch on a 1 mm grid (rows superior->inferior, columns anterior->posterior):
    discs along a half-ellipse, radius genu -> body -> splenium (mm)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    mask = np.zeros(shape, bool)
    for s in np.linspace(0, 1, 200):
        angle = np.pi * (1 - s)
        cx, cy = 80 + 36 * np.cos(angle), 80 - 14 * np.sin(angle)
        radius = np.interp(s, [0, 0.2, 0.35, 0.65, 0.85, 1], [genu, genu, body, body, splenium, splenium])
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    return mask


PLANE = Plane(origin=np.zeros(3), x_vec=np.array([0.0, 1.0, 0.0]), y_vec=np.array([0.0, 0.0, -1.0]))


def test_an_anatomical_cc_passes_the_gate():
    m = measure(arc_cc(), PLANE, np.array([1.0, 0.0]))
    assert 300 < m.area_mm2 < 1200
    assert plausibility_problems(m) == [] and m.implausible == []


def test_the_gate_fires_on_an_over_segmentation_that_takes_in_the_space_under_the_body():
    cc = arc_cc()
    under = np.zeros_like(cc)
    under[66:96, 50:112] = True  # fornix, septum and ventricle CSF under the arch
    m = measure(cc | under, PLANE, np.array([1.0, 0.0]))
    problems = plausibility_problems(m)
    assert problems and any("area" in p or "thickness" in p for p in problems), problems


def test_the_gate_fires_on_a_band_of_even_thickness():
    m = measure(arc_cc(genu=4, body=4, splenium=4), PLANE, np.array([1.0, 0.0]))
    assert any("profile" in p for p in plausibility_problems(m))


def test_cc_alone_removes_fornix_septum_and_csf_from_the_label():
    cc = arc_cc()
    image = np.full(cc.shape, 75.0)  # grey matter
    image[cc] = 110.0  # white matter
    csf = np.zeros_like(cc)
    csf[70:84, 56:104] = True
    csf &= ~cc
    image[csf] = 30.0
    fornix = np.zeros_like(cc)  # a bright column hanging from the body, attached without a gap
    fornix[66:92, 66:69] = True
    fornix &= ~cc
    image[fornix] = 110.0
    band = np.zeros_like(cc)  # a bright band under the body and splenium, below a CSF gap
    band[90:93, 84:112] = True
    band &= ~cc
    image[band] = 110.0
    label = cc | csf | fornix | band
    clean = corpus_callosum_alone(label, image)
    dice = 2 * (clean & cc).sum() / (clean.sum() + cc.sum())
    assert dice > 0.97, dice
    assert not (clean & band).any() and not (clean & csf & ~fornix).any()
    # of the column, at most a stub within CC_EDGE_MM of the body's lower edge is left
    assert (clean & fornix).sum() <= 0.15 * fornix.sum()


def test_cc_alone_keeps_a_clean_label():
    cc = arc_cc()
    image = np.where(cc, 110.0, 40.0)
    clean = corpus_callosum_alone(cc, image)
    assert (clean == cc).mean() > 0.995 and abs(int(clean.sum()) - int(cc.sum())) <= 0.02 * cc.sum()


def test_freesurfer_labels_cleaned_to_an_adult_cc():
    """On a real FreeSurfer subject whose label takes in the fornix and the space under the body,
    the training target is the CC alone: smaller, inside the adult range, body thinnest."""
    from medseg.io import read_nifti
    from medseg.positioning.angles import clean_mask
    from medseg.segment.data import CC_LABELS, PlanePose, Subject
    from tests.conftest import data_path

    folder = data_path("brain", "fs-training", "sub-09")
    subject = Subject.load(folder)
    plane = subject.plane(PlanePose(), 192, 1.25)
    _, alone = subject.sample(PlanePose(), 192, 1.25)
    cleaned, cleaned_plane = subject.cc, subject.cc_plane
    subject.cc = np.isin(np.asarray(read_nifti(folder / "aseg.mgz").array), CC_LABELS).astype(np.uint8)
    subject.cc_plane = None  # the raw label slab looked up as it is
    _, label = subject.sample(PlanePose(), 192, 1.25)
    subject.cc, subject.cc_plane = cleaned, cleaned_plane
    assert alone.sum() < 0.85 * label.sum() and (alone & ~label).sum() < 0.02 * alone.sum()  # projection rounding
    raw = measure(clean_mask(label), plane, np.array([1.0, 0.0]))
    ours = measure(clean_mask(alone), plane, np.array([1.0, 0.0]))
    assert plausibility_problems(ours) == [], plausibility_problems(ours)
    assert plausibility_problems(raw), "the gate should fire on the label with the fornix"


def test_a_plane_turned_out_of_the_midline_keeps_the_whole_cc_as_its_target():
    """FreeSurfer's CC label is a ~5 mm slab: a plane yawed 6 deg leaves it ~3.7 mm lateral at the
    genu and splenium, where the slab looked up as it is loses half the CC. The training target is
    the mid-sagittal label projected onto the turned plane, so its area and extent stay put."""
    from medseg.segment.data import PlanePose, Subject
    from tests.conftest import data_path

    subject = Subject.load(data_path("brain", "fs-training", "sub-09"))
    _, straight = subject.sample(PlanePose(), 192, 1.25)
    for pose in (PlanePose(tilt_si_deg=6.0), PlanePose(tilt_si_deg=-6.0), PlanePose(tilt_lr_deg=6.0),
                 PlanePose(tilt_si_deg=5.0, tilt_lr_deg=-5.0, rotation_deg=12.0)):
        _, turned = subject.sample(pose, 192, 1.25)
        assert abs(int(turned.sum()) - int(straight.sum())) < 0.05 * straight.sum(), pose
        if pose.rotation_deg == 0:  # anterior-posterior extent: genu to splenium
            cols = np.nonzero(turned.any(axis=0))[0]
            assert np.ptp(cols) >= np.ptp(np.nonzero(straight.any(axis=0))[0]) - 2, pose
    # beside the midline (a localizer slice missing it by half its gap): the midline's CC, to 8 mm
    for offset in (2.5, -4.0):
        _, beside = subject.sample(PlanePose(offset_mm=offset, tilt_si_deg=4.0), 192, 1.25)
        assert abs(int(beside.sum()) - int(straight.sum())) < 0.05 * straight.sum(), offset
    assert not subject.sample(PlanePose(offset_mm=10.0), 192, 1.25)[1].any()
    plane = subject.cc_plane
    subject.cc_plane = None  # the slab looked up as it is: the failure this guards against
    _, slab = subject.sample(PlanePose(tilt_si_deg=6.0), 192, 1.25)
    subject.cc_plane = plane
    assert slab.sum() < 0.8 * straight.sum()


def test_a_cc_alone_step_that_cuts_the_cc_itself_keeps_the_network_mask_and_says_so():
    """A CC shaded from genu to splenium (a raw thick slab): the rule's one intensity level cuts
    the darker body and splenium away. The segmenter then keeps the network's (plausible) mask
    for the angles and warns that area and thickness include more than the CC; an evenly lit CC
    is reduced by the rule, without a warning."""
    from medseg.segment.infer import CCSegmenter

    segmenter = CCSegmenter(cc_alone=True)  # the rule step itself, whatever the shipped network
    spacing = segmenter.spacing
    mask = arc_cc(genu=5.5 / spacing, body=3.0 / spacing, splenium=6.5 / spacing, shape=(160, 160))
    probability = np.where(mask, 0.95, 0.02).astype(np.float32)
    columns = np.arange(160)[None, :]
    lit = np.where(mask, 1000.0, 100.0)
    # genu lit, the rest at a third: the rule keeps about a third of the arch
    shaded = np.where(mask, np.interp(columns, [40, 60, 70, 120], [1000.0, 1000.0, 300.0, 300.0]), 100.0) \
        * np.ones((160, 1))
    kept, warning = segmenter.alone(lit.astype(np.float32), probability)
    assert warning is None and (kept > segmenter.threshold).sum() >= 0.4 * mask.sum()
    kept, warning = segmenter.alone(shaded.astype(np.float32), probability)
    assert warning is not None and "include the fornix" in warning
    np.testing.assert_array_equal(kept, probability)
    segmenter.cc_alone = False
    assert segmenter.alone(shaded.astype(np.float32), probability) == (probability, None)


def test_a_thin_cc_body_cut_by_the_opening_is_kept_by_a_thinner_one():
    """A thick slab of a raw localizer thins the bright core of the CC body to ~4 mm: the rule's
    standard opening cuts it, leaving genu and splenium apart. The segmenter then reduces the
    network's mask with a thinner opening, which keeps the whole arch without the fornix below
    it, since the plan's angle stays with the network's mask; no warning."""
    from medseg.segment.cc_alone import CC_OPENING_MM
    from medseg.segment.infer import CCSegmenter, implausibility

    segmenter = CCSegmenter(cc_alone=True)
    spacing = segmenter.spacing
    cc = arc_cc(genu=5.5 / spacing, body=1.6, splenium=6.5 / spacing, shape=(160, 160))
    under = np.zeros_like(cc)  # CSF of the ventricle under the body, then the fornix
    under[71:83, 60:100] = True
    under &= ~cc
    fornix = under.copy()
    fornix[:80] = False
    image = np.where(cc, 1000.0, 600.0)
    image[under] = 150.0
    image[fornix] = 950.0
    network = cc | under
    probability = np.where(network, 0.95, 0.02).astype(np.float32)
    assert implausibility(network, spacing ** 2) is None  # the network's mask: a plausible arch
    standard = corpus_callosum_alone(network, image, spacing, opening_mm=CC_OPENING_MM)
    assert standard.sum() < 0.6 * cc.sum()  # the body is gone: what the first try leaves
    kept, warning = segmenter.alone(image.astype(np.float32), probability)
    assert warning is None
    alone = kept > segmenter.threshold
    dice = 2 * (alone & cc).sum() / (alone.sum() + cc.sum())
    assert dice > 0.9, dice
    assert not (alone & fornix).any()


def test_outline_smoothing_never_takes_a_part_of_the_cc_for_the_cc():
    """Smoothing the outline dissolves a body thinner than the smoothing and leaves genu and
    splenium apart; the outline is then used as it is, and the plan's angle stays that of the
    whole arch instead of one end's."""
    from medseg.cc_line import localize, smooth_outline

    plane = Plane(origin=np.zeros(3), x_vec=np.array([0.0, 1.25, 0.0]), y_vec=np.array([0.0, 0.0, -1.25]))
    thin = arc_cc(genu=4.5, body=1.2, splenium=5.0)
    smoothed, _ = smooth_outline(thin, plane, None, 3.5)
    np.testing.assert_array_equal(smoothed, thin)
    whole = localize(thin, plane).final.angle_deg
    assert abs(localize(thin, plane, smoothing_mm=3.5).final.angle_deg - whole) < 0.5
    thick = arc_cc()  # a body thicker than the smoothing: smoothed as before
    assert not np.array_equal(smooth_outline(thick, plane, None, 3.5)[0], thick)
