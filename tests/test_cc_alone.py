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
    cleaned = subject.cc
    subject.cc = np.isin(np.asarray(read_nifti(folder / "aseg.mgz").array), CC_LABELS).astype(np.uint8)
    _, label = subject.sample(PlanePose(), 192, 1.25)
    subject.cc = cleaned
    assert alone.sum() < 0.85 * label.sum() and not (alone & ~label).any()
    raw = measure(clean_mask(label), plane, np.array([1.0, 0.0]))
    ours = measure(clean_mask(alone), plane, np.array([1.0, 0.0]))
    assert plausibility_problems(ours) == [], plausibility_problems(ours)
    assert plausibility_problems(raw), "the gate should fire on the label with the fornix"


def test_a_cc_alone_step_that_cuts_the_cc_itself_keeps_the_network_mask_and_says_so():
    """A CC shaded from genu to splenium (a raw thick slab): the rule's one intensity level cuts
    the darker body and splenium away. The segmenter then keeps the network's (plausible) mask
    for the angles and warns that area and thickness include more than the CC; an evenly lit CC
    is reduced by the rule, without a warning."""
    from medseg.segment.infer import CCSegmenter

    segmenter = CCSegmenter()
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
