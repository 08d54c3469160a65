"""Adversarial inputs found by trying to break medseg as a hostile user would (pydicom-written)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from tests.conftest import oblique_geometry, write_series
from medseg.io import scan

N = 7


def _series(folder, **extra):
    iop, ipps, pixel = oblique_geometry(n=N)
    rng = np.random.default_rng(3)
    slices = [rng.integers(0, 3000, size=(24, 20)).astype(np.int16) for _ in range(N)]
    return write_series(folder, slices, ipps, iop, pixel, **extra)


def test_a_series_that_reuses_another_series_sop_uids_with_the_same_pixels_is_kept_whole(tmp_path):
    """Two series of one study (a re-export, an anonymiser) share SOP Instance UIDs and pixels:
    the second series must neither vanish nor lose slices as "duplicates" of the first."""
    study = generate_uid()
    a = _series(tmp_path / "a", study_uid=study, SeriesNumber=1)
    b = _series(tmp_path / "b", study_uid=study, SeriesNumber=2)
    by_instance = {int(pydicom.dcmread(p).InstanceNumber): p for p in a}
    for path in b[:2]:  # only some slices reuse the UIDs: a silent loss would drop slices
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = pydicom.dcmread(by_instance[int(ds.InstanceNumber)]).SOPInstanceUID
        ds.save_as(path)
    result = scan(tmp_path)
    assert len(result.series) == 2, result.summary()
    for ref in result.series:
        assert ref.ok and ref.shape[2] == N, (ref.key, ref.shape, ref.problems)
