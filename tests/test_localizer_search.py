"""The localizer's CC search runs the slices near the head's centre first and stops once no other
slice could win: it must choose exactly what running every slice would choose."""

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
    assert skipped and all(f"slice {bounded.slice_index}" in c["skipped"] for c in skipped)


def test_search_widens_ring_by_ring_until_no_slice_can_win(segmenter, localizer, monkeypatch):
    monkeypatch.setattr(infer, "LR_FIRST_MM", 0.5)  # start from the one nearest slice
    widened, run = _run(segmenter, localizer)
    monkeypatch.setattr(infer, "LR_FIRST_MM", infer.LR_SEARCH_MM)
    full, _ = _run(segmenter, localizer)
    _same(widened, full)
    assert len(run) > 1  # it had to widen beyond the first slice
    best = max(c["score"] for c in widened.candidates)
    for c in widened.candidates:  # every slice left out was provably unable to win
        if str(c.get("skipped", "")).startswith("cannot beat"):
            prior = np.exp(-0.5 * (c["offset_from_head_centre_mm"] / infer.LR_PRIOR_SD_MM) ** 2)
            assert infer.PLAUSIBLE_AREA_MM2[1] * prior <= best
