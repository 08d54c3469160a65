"""The localizer's CC search runs the slices near the head's centre first and stops once no other
slice could win: it must choose exactly what running every slice within reach would choose."""

from __future__ import annotations

import numpy as np
import pytest

import medseg.segment.infer as infer


@pytest.fixture(scope="module")
def localizer():
    from medseg.demo import scan_localizer
    from medseg.examples import icbm152_head

    head = icbm152_head()
    if head is None:
        pytest.skip("nilearn (ICBM152 template) not installed")
    return scan_localizer(head, slices=35, thickness_mm=4.0, pitch_deg=8.0)


@pytest.fixture(scope="module")
def segmenter():
    return infer.CCSegmenter()


def _run(segmenter, volume):
    result = segmenter.segment(volume)
    run = [c["slice"] for c in result.candidates if "cc_area_mm2" in c]
    return result, run


def _same(a, b):
    assert a.slice_index == b.slice_index
    assert np.array_equal(np.asarray(a.mask.array), np.asarray(b.mask.array))


def test_bounded_search_matches_the_full_search_with_fewer_planes(segmenter, localizer, monkeypatch):
    bounded, run = _run(segmenter, localizer)
    monkeypatch.setattr(infer, "LR_FIRST_MM", infer.LR_SEARCH_MM)  # every eligible slice at once
    full, run_all = _run(segmenter, localizer)
    _same(bounded, full)
    assert len(run) < len(run_all)
    skipped = [c for c in bounded.candidates if str(c.get("skipped", "")).startswith("cannot beat")]
    assert bounded.slice_choice["slice"] == bounded.slice_index
    assert skipped and all(f"slice {bounded.slice_index}" in c["skipped"] for c in skipped)


def test_search_widens_ring_by_ring_until_no_slice_can_win(segmenter, localizer, monkeypatch):
    monkeypatch.setattr(infer, "LR_FIRST_MM", 0.5)  # start from the one nearest slice
    widened, run = _run(segmenter, localizer)
    monkeypatch.setattr(infer, "LR_FIRST_MM", infer.LR_SEARCH_MM)
    full, _ = _run(segmenter, localizer)
    _same(widened, full)
    assert len(run) > 1  # it had to widen beyond the first slice
    best = widened.candidates[widened.slice_index]["score"]  # confidence x prior of the chosen slice
    assert best == max(c["score"] for c in widened.candidates)
    for c in widened.candidates:  # every slice left out was provably unable to win: score <= prior
        if str(c.get("skipped", "")).startswith("cannot beat"):
            assert abs(c["offset_from_head_centre_mm"]) > infer.LR_REFERENCE_MM
            assert infer._lr_prior(c["offset_from_head_centre_mm"]) <= best + 1e-4


def test_the_slice_chosen_is_the_most_confident_cc_not_the_largest():
    """A network trained on the CC alone outlines it about as large 5-10 mm beside the midline as
    on it: on a raw 35 x 4 mm localizer (a fine-tuned network; areas and confidences as measured)
    the largest CC x confidence x prior lay in the slice 3 mm lateral, whose plan was 2.75 deg
    off. The slice chosen is the most confident (x prior) of those with a plausible CC of at
    least half the reference: the largest plausible one near the head's centre."""
    offsets = [24.9, 16.9, 12.9, 8.9, 4.9, 0.9, -3.1, -7.1, -11.1]
    areas = [0.0, 0.0, 62.5, 385.9, 645.3, 684.4, 771.9, 675.0, 43.8]
    confidences = [0.0, 0.0, 0.7782, 0.9628, 0.9687, 0.9764, 0.9679, 0.9623, 0.8732]
    scored = {k: (a, c) for k, (a, c) in enumerate(zip(areas, confidences))}
    by_area = max(scored, key=lambda k: scored[k][0] * scored[k][1] * infer._lr_prior(offsets[k]))
    assert offsets[by_area] == -3.1
    chosen, scores, reference = infer._most_confident(scored, offsets)
    assert offsets[chosen] == 0.9 and reference == 771.9
    assert scores[chosen] == pytest.approx(0.9764 * infer._lr_prior(0.9))
    # a very confident small CC is not a candidate (under half the reference): the next best is
    sliver = {**scored, 5: (300.0, 0.999)}
    assert infer._most_confident(sliver, offsets)[0] == 6
    sliver[5] = (400.0, 0.999)  # half the reference or more: it is
    assert infer._most_confident(sliver, offsets)[0] == 5
    # an implausibly large mask sets no bar: neither near the centre nor far lateral
    for k in (4, 0):
        huge = {**scored, k: (2000.0, 0.55)}
        assert infer._most_confident(huge, offsets)[0] == 5
    # a large plausible over-segmentation far lateral does not raise the bar either
    far = {**scored, 0: (1600.0, 0.6)}
    assert infer._most_confident(far, offsets)[0] == 5
    # no plausible CC anywhere: nothing qualifies
    assert infer._most_confident({k: (a * 0.2, c) for k, (a, c) in scored.items()}, offsets)[0] is None
