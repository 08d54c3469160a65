"""Adversarial inputs found by trying to break medseg as a hostile user would (pydicom-written)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medseg.io import scan
from tests.conftest import oblique_geometry, write_series

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


def test_listen_series_sent_over_two_associations_is_processed_again_whole(tmp_path):
    """A console that sends a series over two associations: the first part is processed on the
    first release; the new instances make the series pending again (all its files), while an
    instance sent again does not."""
    import json

    from medseg.listen.node import Listener
    from medseg.listen.spool import Spool

    spool = Spool(tmp_path / "spool")
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(5)]
    for sop in sops[:3]:
        spool.store(study, series, sop, b"x", association=1)
    (first,) = spool.association_ended(1, released=True)
    Spool.mark_processed(first.folders[0], {"status": "ok"})
    spool.store(study, series, sops[0], b"x", association=2)  # sent again: nothing new
    assert spool.association_ended(2, released=True) == []
    for sop in sops[3:]:
        spool.store(study, series, sop, b"x", association=3)
    (second,) = spool.association_ended(3, released=True)
    assert second.folders == first.folders and len(list(second.folders[0].glob("*.dcm"))) == 5

    # the earlier result of that series is replaced, not listed beside the new one
    out = tmp_path / "out"
    (out / "0001_loc").mkdir(parents=True)
    (out / "other").mkdir()
    (out / "study.json").write_text(json.dumps({"series": [
        {"key": "k1", "status": "ok", "result": "0001_loc/result.json"},
        {"key": "k2", "status": "ok", "result": "other/result.json"}]}))
    Listener._drop_replaced(out, {"k1"})
    assert [s["key"] for s in json.loads((out / "study.json").read_text())["series"]] == ["k2"]
    assert not (out / "0001_loc").exists() and (out / "other").exists()


def test_dask_shutdown_chatter_is_not_printed_without_verbose(caplog):
    """distributed logs a CommClosedError traceback at INFO while a LocalCluster stops; with
    medseg's default level (INFO) or -q it must not reach stderr."""
    import logging

    pytest.importorskip("distributed")
    import distributed  # noqa: F401  (sets its loggers' levels on import)

    from medseg.batch.dask_engine import _quiet_dask_logs

    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.INFO)
    try:
        _quiet_dask_logs()
        assert not logging.getLogger("distributed.batched").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(old)


def test_per_series_commands_report_a_damaged_or_other_modality_series_as_failed(tmp_path, caplog):
    """`medseg preprocess` (as segment/position) on a good series beside a damaged one and a CT:
    the others fail by name and the exit status says partial, never 0."""
    from medseg.cli import main

    study = generate_uid()
    _series(tmp_path / "in" / "good", study_uid=study, SeriesNumber=1)
    bad = _series(tmp_path / "in" / "bad", study_uid=study, SeriesNumber=2)
    bad[3].write_bytes(bad[3].read_bytes()[:-100])
    _series(tmp_path / "in" / "ct", study_uid=study, SeriesNumber=3, Modality="CT")
    code = main(["preprocess", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--no-skullstrip", "--fast"])
    assert code == 1
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "CorruptFileError" in errors and "modality CT" in errors


def test_stitch_names_a_damaged_series_instead_of_only_finding_no_set(tmp_path, caplog):
    from medseg.cli import main

    bad = _series(tmp_path / "in" / "bad")
    bad[2].write_bytes(bad[2].read_bytes()[:-100])
    assert main(["stitch", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 2
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "CorruptFileError" in errors, errors


def test_series_without_study_uid_are_not_merged_into_one_study(tmp_path):
    """Two patients' series that both lack StudyInstanceUID must not become one study."""
    for name in ("p1", "p2"):
        for path in _series(tmp_path / name, PatientID=name):
            ds = pydicom.dcmread(path)
            del ds.StudyInstanceUID
            ds.save_as(path)
    result = scan(tmp_path)
    assert len(result.studies) == 2 and all(len(s.series) == 1 for s in result.studies)
    assert all(ref.ok and ref.shape[2] == N for ref in result.series)


def test_two_repeats_of_one_acquisition_are_not_a_spine_set(tmp_path):
    """Two series with the same geometry (one acquisition sent twice, a repeat) cover no more
    than one of them: composing them would be a wrong success."""
    from medseg.spine.stations import find_station_sets

    study = generate_uid()
    iop, ipps, pixel = oblique_geometry(n=N)
    rng = np.random.default_rng(3)
    for number in (1, 2):
        slices = [rng.integers(0, 3000, size=(24, 20)).astype(np.int16) for _ in range(N)]
        write_series(tmp_path / str(number), slices, ipps, [0, 1, 0, 0, 0, -1], pixel, study_uid=study,
                     SeriesNumber=number, SeriesDescription="sag t2")
    result = scan(tmp_path)
    assert len(result.series) == 2 and all(r.ok for r in result.series), result.summary()
    assert find_station_sets(result.series) == []
