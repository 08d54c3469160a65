"""`medseg listen`: a localizer sent by C-STORE on loopback is planned like `medseg position`;
callers outside the allow-list are refused; bad input and a full queue never stop the node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medseg.cli import main
from medseg.io import write_dicom_series
from medseg.listen import Listener, ListenOptions
from medseg.listen.spool import Spool
from medseg.localhost import free_port
from tests.conftest import REPO

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

needs_model = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                 reason="no shipped CC model")


@pytest.fixture(scope="module")
def localizer_files(tmp_path_factory):
    """A 15-slice, 4 mm sagittal localizer of the ICBM152 head (pitched 8 deg), as DICOM files."""
    from medseg.demo import scan_localizer
    from medseg.examples import icbm152_head

    head = icbm152_head()
    if head is None:
        pytest.skip("nilearn (the ICBM152 head) is not installed")
    folder = tmp_path_factory.mktemp("loc") / "localizer"
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
             "PatientName": "Secret^Person", "PatientID": "P1"}
    write_dicom_series(scan_localizer(head, slices=15, pitch_deg=8.0, dicom=study), folder,
                       series_description="localizer sag", series_number=1)
    return folder, sorted(folder.iterdir())


def _send(port, datasets, *, calling="SCANNER"):
    """C-STORE ``datasets`` in one association; returns the statuses (None: not associated)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
    if not assoc.is_established:
        return None
    statuses = [int(assoc.send_c_store(ds).Status) for ds in datasets]
    assoc.release()
    return statuses


def _node(tmp_path, skull_strip: bool = False, **options) -> Listener:
    from medseg.batch.run import RunOptions

    return Listener(ListenOptions(output=tmp_path / "out", host="127.0.0.1", port=0, allowed_callers=("SCANNER",),
                                  run=RunOptions(skull_strip=skull_strip), **options)).start()


def _broken(study_uid: str) -> Dataset:
    """An MR image whose pixel data is cut short and which has no geometry."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 7, 1
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = b"\x00\x01" * 100
    return _with_meta(ds)


def _with_meta(ds: Dataset) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@needs_model
def test_localizer_sent_by_c_store_gets_the_plan_of_medseg_position(tmp_path, localizer_files):
    folder, files = localizer_files
    assert main(["position", str(folder), "-o", str(tmp_path / "position"), "--no-skullstrip", "-q"]) == 0
    expected = json.loads((tmp_path / "position" / "result.json").read_text())

    node = _node(tmp_path)
    try:
        # a broken image and a dataset without UIDs first: refused or recorded, the node goes on
        assert _send(node.port, [_broken(generate_uid())]) == [0]
        no_uids = Dataset()
        no_uids.SOPClassUID, no_uids.SOPInstanceUID, no_uids.Modality = MRImageStorage, generate_uid(), "MR"
        assert _send(node.port, [_with_meta(no_uids)]) == [0xC210]
        assert node.wait_idle(60)
        datasets = [dcmread(p) for p in files]
        assert _send(node.port, datasets) == [0] * len(files)
        assert node.wait_idle(60)
        health = node.health()
        # the same series sent again is kept in the spool but not processed twice
        assert _send(node.port, datasets) == [0] * len(files)
        assert node.wait_idle(60)
        assert node.health()["batches"] == health["batches"]
    finally:
        node.stop()
    assert health["failed_batches"] == 1 and health["batches"] == 2 and health["refused_stores"] == 1

    study_dir = tmp_path / "out" / datasets[0].StudyInstanceUID
    study = json.loads((study_dir / "study.json").read_text())
    assert [s["status"] for s in study["series"]] == ["ok"] and len(study["jobs"]) == 1
    assert study["jobs"][0]["last_arrival_to_outputs_s"] > 0
    assert set(study["jobs"][0]["seconds"]) >= {"scan", "load", "n4", "segment", "angles", "outputs"}
    result = json.loads((study_dir / study["series"][0]["result"]).read_text())
    for key in ("box", "line", "final"):
        assert result["angles"][key]["angle_deg"] == pytest.approx(expected["angles"][key]["angle_deg"], abs=1e-9)
    assert np.allclose(result["axial_plan"]["image_orientation_patient"],
                       expected["axial_plan"]["image_orientation_patient"], atol=1e-9)
    assert abs(result["angles"]["final"]["angle_deg"]) < 45
    # the broken image is recorded as a failure of its own study
    failed = [p for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name[0].isdigit() and p != study_dir]
    assert len(failed) == 1
    assert json.loads((failed[0] / "study.json").read_text())["status"] != "ok"


@needs_model
def test_plan_is_published_first_then_brain_mask_and_dicom_results(tmp_path, localizer_files):
    """With skull stripping and DICOM results the plan is still the plan-only one (published
    before them, not recomputed); the brain mask and the SEG/SR/SC are added to the same folder."""
    folder, files = localizer_files
    assert main(["position", str(folder), "-o", str(tmp_path / "position"), "--no-skullstrip", "-q"]) == 0
    expected = json.loads((tmp_path / "position" / "result.json").read_text())
    node = _node(tmp_path, skull_strip=True)
    try:
        datasets = [dcmread(p) for p in files]
        assert _send(node.port, datasets) == [0] * len(files)
        assert node.wait_idle(120)
    finally:
        node.stop()
    study_dir = tmp_path / "out" / datasets[0].StudyInstanceUID
    study = json.loads((study_dir / "study.json").read_text())
    (entry,), (job,) = study["series"], study["jobs"]
    assert entry["status"] == "ok" and entry["dicom_status"] == "ok" and entry["brain_volume_ml"] > 500
    assert 0 < job["last_arrival_to_outputs_s"] < job["last_arrival_to_all_outputs_s"]
    assert job["seconds"]["after_plan"] > 0
    series_dir = study_dir / entry["result"].partition("/")[0]
    for name in ("brain_mask.nii.gz", "dicom/seg.dcm", "dicom/sr.dcm", "dicom/sc.dcm"):
        assert (series_dir / name).is_file(), name
    result = json.loads((series_dir / "result.json").read_text())
    assert result["brain"]["volume_ml"] == pytest.approx(entry["brain_volume_ml"], abs=0.1)
    for key in ("box", "line", "final"):
        assert result["angles"][key]["angle_deg"] == pytest.approx(expected["angles"][key]["angle_deg"], abs=1e-9)
    sr = dcmread(series_dir / "dicom" / "sr.dcm")
    assert sr.StudyInstanceUID == datasets[0].StudyInstanceUID


@needs_model
def test_failing_work_after_the_plan_keeps_the_plan(tmp_path, localizer_files, monkeypatch):
    import medseg.batch.run as run

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(run, "_complete_position", broken)
    folder, files = localizer_files
    node = _node(tmp_path)
    try:
        datasets = [dcmread(p) for p in files]
        datasets[0].StudyInstanceUID = generate_uid()
        for ds in datasets:
            ds.StudyInstanceUID = datasets[0].StudyInstanceUID
        assert _send(node.port, datasets) == [0] * len(files)
        assert node.wait_idle(60)
    finally:
        node.stop()
    study_dir = tmp_path / "out" / datasets[0].StudyInstanceUID
    (entry,) = json.loads((study_dir / "study.json").read_text())["series"]
    assert entry["status"] == "ok" and "disk gone" in entry["deferred_error"]
    assert (study_dir / entry["result"]).is_file() and "dicom_status" not in entry


@needs_model
def test_caller_outside_the_allow_list_is_refused(tmp_path):
    node = _node(tmp_path)
    try:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="MEDSEG")
        assert assoc.is_rejected and not assoc.is_established
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="MEDSEG")
        assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
        assoc.release()
    finally:
        node.stop()


@needs_model
def test_full_queue_refuses_c_store_with_out_of_resources(tmp_path, localizer_files, monkeypatch):
    _, files = localizer_files
    release = threading.Event()
    node = _node(tmp_path, queue_size=1)
    monkeypatch.setattr(node, "process", lambda batch: release.wait(30))
    try:
        one = dcmread(files[0])
        for _ in range(2):  # the first study is being processed, the second waits in the queue
            one.StudyInstanceUID, one.SeriesInstanceUID = generate_uid(), generate_uid()
            one.SOPInstanceUID = generate_uid()
            assert _send(node.port, [one]) == [0]
            time.sleep(0.3)
        one.SOPInstanceUID = generate_uid()
        assert _send(node.port, [one]) == [0xA700]
        assert node.health()["refused_stores"] == 1
    finally:
        release.set()
        node.stop()


def test_series_complete_on_release_or_after_the_quiet_period(tmp_path):
    spool = Spool(tmp_path / "a", complete_on="association", quiet_seconds=1.0)
    spool.store("1.2.3", "1.2.3.4", "1.2.3.4.1", b"x", association=1)
    spool.store("1.2.3", "1.2.3.5", "1.2.3.5.1", b"x", association=1)
    spool.store("1.2.9", "1.2.9.4", "1.2.9.4.1", b"x", association=2)
    assert spool.due(time.monotonic() + 10) == []  # association mode: the quiet period alone is not enough
    batches = spool.association_ended(1, released=True)
    assert [(b.study_uid, len(b.folders), b.files) for b in batches] == [("1.2.3", 2, 2)]
    assert spool.association_ended(2, released=False) == []  # aborted: quiet period decides
    assert [b.study_uid for b in spool.due(time.monotonic() + 10)] == ["1.2.9"]
    assert sorted(p.name for p in (tmp_path / "a" / "1.2.3").iterdir()) == ["1.2.3.4", "1.2.3.5"]

    quiet = Spool(tmp_path / "q", complete_on="quiet", quiet_seconds=1.0)
    quiet.store("../../evil", "1.2.3.4", "1.2.3.4.1", b"x", association=1)
    assert quiet.due() == []
    (batch,) = quiet.due(time.monotonic() + 1.5)
    assert batch.folders[0].parent.parent == tmp_path / "q"  # a malformed UID never becomes a path
    Spool.mark_processed(batch.folders[0], {"status": "ok"})
    quiet.store("../../evil", "1.2.3.4", "1.2.3.4.1", b"x", association=3)  # sent again
    assert quiet.pending() == 0 and quiet.leftovers() == []
    quiet.store("../../evil", "1.2.3.4", "1.2.3.4.2", b"y", association=3)  # new: processed again
    assert quiet.pending() == 1
    (again,) = quiet.due(time.monotonic() + 1.5)
    assert again.folders == batch.folders
    Spool.mark_processed(again.folders[0], {"status": "ok"})
    quiet.store("1.5", "1.5.1", "1.5.1.1", b"x", association=3)
    restarted = Spool(tmp_path / "q", complete_on="quiet")
    assert [b.study_uid for b in restarted.leftovers()] == ["1.5"]


@needs_model
def test_an_instance_sent_again_with_other_content_replaces_the_earlier_and_says_so(tmp_path, caplog):
    spool = Spool(tmp_path / "s", complete_on="association")
    first = spool.store("1.2.3", "1.2.3.4", "1.2.3.4.1", b"intact", association=1)
    spool.store("1.2.3", "1.2.3.4", "1.2.3.4.1", b"intact", association=1)  # the same bytes: quiet
    assert "received again" not in caplog.text
    spool.store("1.2.3", "1.2.3.4", "1.2.3.4.1", b"cut", association=1)
    assert "instance 1.2.3.4.1 received again with different content" in caplog.text
    assert first.read_bytes() == b"cut"


def test_listen_command_answers_echo_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-m", "medseg.cli", "listen", "--port", str(port), "--host", "127.0.0.1",
                              "-o", str(tmp_path / "out"), "--no-skullstrip", "--health-seconds", "0.5"],
                             env=env, stderr=subprocess.PIPE, text=True)
    try:
        ae = AE(ae_title="ANY")
        ae.add_requested_context(Verification)
        for _ in range(100):
            assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
            if assoc.is_established:
                break
            time.sleep(0.1)
        assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
        assoc.release()
        time.sleep(0.6)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
    log = child.stderr.read()
    assert "listening as MEDSEG" in log and "health:" in log and "stopping" in log
    assert json.loads((tmp_path / "out" / "health.json").read_text())["received_files"] == 0


def test_study_json_status_follows_the_batch_rule_across_batches(tmp_path):
    """A study whose series arrive in separate batches: one failed series beside an ok one makes
    the study partial (as `medseg run` reports it), not failed, and skipped series change nothing."""
    def status():
        return json.loads((tmp_path / "study.json").read_text())["status"]

    Listener._write_study_json(tmp_path, "S", [{"series": "2", "status": "skipped"}], {"status": "skipped"})
    assert status() == "skipped"
    Listener._write_study_json(tmp_path, "S", [{"series": "3", "status": "failed"}], {"status": "failed"})
    assert status() == "failed"
    Listener._write_study_json(tmp_path, "S", [{"series": "1", "status": "ok"}], {"status": "ok"})
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["status"] == "partial" and len(study["jobs"]) == 3 and len(study["series"]) == 3
