"""`medseg run` and the per-series commands under hostile conditions: colliding names and study
ids, file-system errors, signals, bugs inside a stage, honest statuses, outputs inside the input,
resume (also after SIGKILL), shards into one folder, and the memory cap.

The studies are tiny synthetic spine sets (three overlapping stations, composing takes well under
a second), written as DICOM with medseg's writer; name collisions use the pydicom factory.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from pydicom.uid import generate_uid
from scipy import ndimage

from medseg.batch import report as batch_report
from medseg.batch import run as batch
from medseg.cli import main
from medseg.io import atomic, scan, write_dicom_series
from medseg.io.scan import RUN_MARKER, Study
from medseg.synth.stations import StationSpec, make_stations
from medseg.volume import Volume
from tests.conftest import REPO, write_series

pytestmark = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                reason="no shipped CC model")

FAST = dict(quiet=True, n4=False)


def spine_study(root, seed: int = 0, **dicom) -> str:
    """Three overlapping sagittal spine stations of one study (about 300 kB of DICOM)."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=(20, 20, 100)), 2.0)
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [15.0, -15.0, -100.0]
    source = Volume(((texture - texture.min()) / np.ptp(texture) * 1000 + 100).astype(np.float32), affine)
    attrs = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
             "BodyPartExamined": "SPINE", **dicom}
    specs = [StationSpec(98, 20, 1.2, 2.0), StationSpec(40, -40, 1.5, 2.5), StationSpec(-20, -98, 1.0, 2.0)]
    for number, station in zip((11, 12, 13), make_stations(source, specs).stations):
        write_dicom_series(station.with_array(station.array, dicom=attrs), root / f"s{number}",
                           series_description=f"t2 sag spine {number - 10}", series_number=number)
    return attrs["StudyInstanceUID"]


def studies_folder(root, n: int) -> list[str]:
    return [spine_study(root / f"study{k}", seed=k) for k in range(n)]


def rows(out) -> dict:
    """Every study's series rows from summary.json, without timings (these differ run to run)."""
    data = json.loads((out / "summary.json").read_text())
    return {s["study_id"]: (s["status"], s["series"]) for s in data["studies"]}


def study_json(out, uid) -> dict:
    return json.loads((out / uid / "study.json").read_text())


BOOM = ZeroDivisionError("boom")


def fail_compose_for(monkeypatch, uids, exc=BOOM):
    """Make composing raise ``exc`` for the given studies (a bug inside the stitch stage)."""
    import medseg.spine

    original = medseg.spine.compose

    def compose(volumes, *args, **kwargs):
        if volumes[0].meta.study_uid in uids:
            raise exc
        return original(volumes, *args, **kwargs)

    monkeypatch.setattr(medseg.spine, "compose", compose)


# --- 1. no result lost or overwritten -------------------------------------------------------

def _two_series_one_name(folder):
    study = generate_uid()
    ramp = np.arange(24 * 20, dtype=np.int16).reshape(24, 20)
    iop = [0, 1, 0, 0, 0, -1]  # sagittal
    ipps = [[x * 2.0, 0, 0] for x in range(4)]
    for k in range(2):
        write_series(folder / f"s{k}", [ramp * (k + 1)] * 4, ipps, iop, (1.0, 1.0), study_uid=study,
                     series_number=5, description="same name")
    return study


def test_series_with_the_same_number_and_description_get_distinct_stable_names(tmp_path, capsys):
    _two_series_one_name(tmp_path / "in")
    names = [batch.series_names(scan(tmp_path / "in").studies[0]) for _ in range(2)]
    assert len(set(names[0].values())) == 2 and names[0] == names[1]  # unique, and the same every run
    assert all(n.startswith("0005_same_name_") for n in names[0].values())
    assert main(["convert", str(tmp_path / "in"), "-o", str(tmp_path / "nii"), "-q"]) == 0
    written = sorted(p.name for p in (tmp_path / "nii").glob("*.nii.gz"))
    assert written == sorted(f"{n}.nii.gz" for n in names[0].values())


def test_studies_sharing_a_uid_or_a_folder_never_overwrite_each_other(tmp_path):
    _two_series_one_name(tmp_path / "in")
    refs = scan(tmp_path / "in").studies[0].series
    # two studies of one run with the same StudyInstanceUID (an anonymiser that reused it)
    twins = [Study(uid="1.2.3", series=refs[:1]), Study(uid="1.2.3", series=refs[1:])]
    keys = batch.study_keys(twins)
    ids = batch.assign_folders(twins, keys, tmp_path / "out")
    assert len(set(keys)) == 2 and len(set(ids)) == 2 and all(i.startswith("1.2.3-") for i in ids)
    assert batch.assign_folders(twins, batch.study_keys(twins), tmp_path / "out") == ids  # stable
    # a finished folder of another study under this study's id is kept; this one goes elsewhere
    uid = spine_study(tmp_path / "in2")
    out = tmp_path / "out2"
    batch.run([tmp_path / "in2"], out, batch.RunOptions(**FAST))
    other = study_json(out, uid)
    other["study_key"] = "another study"
    (out / uid / "study.json").write_text(json.dumps(other))
    status, report = batch.run([tmp_path / "in2"], out, batch.RunOptions(**FAST))
    assert status == 0
    assert study_json(out, uid)["study_key"] == "another study"  # untouched
    (moved,) = [p for p in out.iterdir() if p.name.startswith(uid + "-")]
    assert json.loads((moved / "study.json").read_text())["status"] == "ok"
    assert len(rows(out)) == 2


# --- 2. errors, not tracebacks --------------------------------------------------------------

def one_error(caplog, capsys) -> str:
    """The single error line logged (no traceback anywhere)."""
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    assert "Traceback" not in capsys.readouterr().err
    return errors[0].getMessage()


@pytest.mark.parametrize("command", ["convert", "stitch", "preprocess", "segment", "position", "run", "demo"])
def test_output_that_is_a_file_is_one_clear_line(tmp_path, capsys, caplog, command):
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("x")
    args = {"run": ["run", "-i", str(tmp_path / "in")], "demo": ["demo"]}.get(command, [command, str(tmp_path / "in")])
    assert main([*args, "-o", str(tmp_path / "file")]) == 2
    assert "is an existing file" in one_error(caplog, capsys)


def test_report_pointing_at_a_folder_fails_before_the_run(tmp_path, capsys, caplog):
    spine_study(tmp_path / "in")
    (tmp_path / "rep").mkdir()
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q",
                 "--report", str(tmp_path / "rep")]) == 2
    assert "is a folder" in one_error(caplog, capsys)
    assert not list((tmp_path / "out").glob("*/study.json"))  # nothing was run


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_output_is_one_line(tmp_path, capsys, caplog):
    (tmp_path / "ro").mkdir(mode=0o500)
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "ro" / "x")]) == 2
    assert "errno 13 EACCES" in one_error(caplog, capsys)


def _disk_full_for(monkeypatch, predicate):
    original = atomic._commit

    def commit(temp, target, durable):
        if predicate(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return original(temp, target, durable)

    monkeypatch.setattr(atomic, "_commit", commit)


def test_disk_full_keeps_the_errno_and_resume_retries(tmp_path, monkeypatch, capsys, caplog):
    uids = studies_folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    # the disk fills up while QC pictures are written: each study fails, recorded with the errno
    _disk_full_for(monkeypatch, lambda target: target.suffix == ".png")
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(out), "-q", "--no-n4"]) == 2
    for uid in uids:
        (row,) = study_json(out, uid)["series"]
        assert row["status"] == "failed" and row["errno"] == errno.ENOSPC and "ENOSPC" in row["message"]
        assert "traceback" not in row  # a full disk is not a bug
    # completely full: even study.json cannot be written -> one line with the errno, nothing half-done
    _disk_full_for(monkeypatch, lambda target: True)
    capsys.readouterr()
    caplog.clear()
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(out), "-q", "--no-n4", "--resume"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all("ENOSPC" in e for e in errors)  # one line per study, then the run's
    assert "Traceback" not in capsys.readouterr().err
    assert not list(out.glob(".partial-*"))
    monkeypatch.undo()
    status, report = batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST, resume=True))
    assert status == 0 and report["resumed_studies"] == 0  # failed studies are retried
    assert {s for s, _ in rows(out).values()} == {"ok"}


def test_a_bug_in_a_stage_is_recorded_with_its_traceback_and_the_batch_goes_on(tmp_path, monkeypatch):
    uids = studies_folder(tmp_path / "in", 2)
    fail_compose_for(monkeypatch, {uids[0]})
    status, _ = batch.run([tmp_path / "in"], tmp_path / "out", batch.RunOptions(**FAST))
    assert status == 1
    (row,) = study_json(tmp_path / "out", uids[0])["series"]
    assert row["stage"] == "stitch" and row["error_type"] == "ZeroDivisionError"
    assert "internal error in stage stitch" in row["message"] and "ZeroDivisionError: boom" in row["traceback"]
    assert study_json(tmp_path / "out", uids[1])["status"] == "ok"


def test_a_bug_or_engine_failure_quoting_a_patient_path_is_recorded_without_the_name(tmp_path, monkeypatch):
    """A bug's message and traceback, and an engine's failure reason, can quote an input path:
    the row keeps them with the patient's words hidden."""
    folder = tmp_path / "in" / "Secret^Person_P98765"
    uid = spine_study(folder, PatientName="Secret^Person", PatientID="P98765")
    fail_compose_for(monkeypatch, {uid}, ValueError(f"cannot use {folder}/s12/00001.dcm"))
    status, _ = batch.run([folder], tmp_path / "out", batch.RunOptions(**FAST))
    assert status == 2
    (row,) = study_json(tmp_path / "out", uid)["series"]
    assert "*^*_*/s12/00001.dcm" in row["message"] and "*^*_*/s12/00001.dcm" in row["traceback"]
    study = scan(folder).studies[0]
    record = batch.record_engine_failure(study, tmp_path / "out2", f"KilledWorker: {folder}", sid="x", key="k")
    for entry in [row, *record.series, *study_json(tmp_path / "out2", "x")["series"]]:
        assert "Secret" not in json.dumps(entry) and "P98765" not in json.dumps(entry), entry


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_study_in_progress_and_stops(tmp_path, monkeypatch, capsys, signum):
    uids = studies_folder(tmp_path / "in", 3)
    import medseg.spine

    original = medseg.spine.compose
    calls = []

    def compose(volumes, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signum)  # arrives while the first study is being composed
            time.sleep(0.2)
        return original(volumes, *args, **kwargs)

    monkeypatch.setattr(medseg.spine, "compose", compose)
    out = tmp_path / "out"
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(out), "-q", "--no-n4",
                 "--report", str(tmp_path / "run.json")]) == 128 + signum
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["interrupted"] == signal.Signals(signum).name
    assert len(calls) == 1 and report["studies"] == 1 and report["not_started"] == 2
    assert capsys.readouterr().out.startswith(f"stopped by {signal.Signals(signum).name}: 1 studies")
    (done,) = rows(out).values()  # the finished study is written and listed
    assert done[0] == "ok" and not list(out.glob(".partial-*"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    monkeypatch.setattr(medseg.spine, "compose", original)
    status, report = batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST, resume=True))
    assert status == 0 and report["resumed_studies"] == 1 and set(rows(out)) == set(uids)


# --- 3. honest status and exit codes ----------------------------------------------------------

def test_study_and_exit_status_rules():
    assert batch.study_status(["ok", "skipped"]) == "ok"
    assert batch.study_status(["ok", "failed"]) == "partial"
    assert batch.study_status(["failed", "skipped"]) == "failed"
    assert batch.study_status(["skipped"]) == batch.study_status([]) == "skipped"
    assert batch.exit_status(["ok", "skipped"]) == 0
    assert batch.exit_status(["ok", "partial"]) == 1 and batch.exit_status(["ok"], damaged_files=1) == 1
    assert batch.exit_status(["skipped"]) == batch.exit_status(["failed"]) == batch.exit_status([]) == 2


def test_ct_only_folder_is_not_a_success(tmp_path, capsys):
    from medseg.volume import VolumeMeta

    ct = Volume(np.zeros((16, 16, 4), np.int16), np.eye(4),
                VolumeMeta(modality="CT", dicom={"StudyInstanceUID": generate_uid()}))
    write_dicom_series(ct, tmp_path / "in" / "ct", series_description="ct", series_number=3)
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 2
    ((status, series),) = rows(tmp_path / "out").values()
    assert status == "skipped" and "modality CT" in series[0]["message"]


def test_broken_inputs_are_failed_never_skipped(tmp_path, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "in" / "notgzip.nii.gz").write_bytes(b"this is not gzip data" * 20)
    uid = spine_study(tmp_path / "in" / "spine")
    victim = sorted((tmp_path / "in" / "spine" / "s12").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-300])  # a station cut short
    status, report = batch.run([tmp_path / "in"], tmp_path / "out", batch.RunOptions(**FAST))
    assert status == 2  # nothing succeeded: the stations left do not overlap without the damaged one
    found = rows(tmp_path / "out")
    nifti = [series for sid, (st, series) in found.items() if sid != uid]
    assert len(nifti) == 2 and all(s[0]["status"] == "failed" for s in nifti)
    assert all(s[0]["error_type"] == "CorruptFileError" for s in nifti)
    study_status_, series = found[uid]
    assert study_status_ == "failed"
    (station,) = [r for r in series if r["status"] != "skipped"]  # the damaged station
    assert station["status"] == "failed" and station["series"].startswith("0012_"), series
    assert "damaged" in station["message"]


def test_a_folder_named_after_the_patient_stays_out_of_logs_and_summaries(tmp_path, caplog):
    """Study folders are often named after the patient. The error messages that quote input paths
    (study.json, summary.json/csv, the run report, the triage page, the log) hide the patient's
    name parts and ID, from the headers, as whole words, keeping the path's shape."""
    folder = tmp_path / "in" / "Secret^Person_P98765"
    spine_study(folder, PatientName="Secret^Person", PatientID="P98765")
    victim = sorted((folder / "s12").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-300])
    caplog.set_level("INFO")
    status, report = batch.run([folder], tmp_path / "out", batch.RunOptions(**FAST))
    assert status == 2
    (_, series), = rows(tmp_path / "out").values()
    (station,) = [r for r in series if r["status"] == "failed"]
    assert "*^*_*" in station["message"] and victim.name in station["message"], station["message"]
    assert report["inputs"] == [str(tmp_path / "in" / "*^*_*")]
    assert report["damaged_files"][0]["path"] == str(victim).replace("Secret^Person_P98765", "*^*_*")
    texts = [p.read_text() for p in (tmp_path / "out").rglob("*") if p.suffix in (".json", ".csv", ".html")]
    texts.append(caplog.text)
    assert "damaged file" in caplog.text and "*^*_*" in caplog.text
    for text in texts:
        assert "secret" not in text.lower() and "P98765" not in text, text[:2000]


def test_a_study_whose_every_file_is_damaged_hides_the_patient_too(tmp_path, caplog):
    """No intact header: the names come from the damaged files' own (partial) headers."""
    folder = tmp_path / "in" / "Schmidt^Karl_ID-0047"
    spine_study(folder, PatientName="Schmidt^Karl", PatientID="ID-0047")
    for victim in folder.rglob("*.dcm"):
        victim.write_bytes(victim.read_bytes()[:-300])
    caplog.set_level("INFO")
    status, report = batch.run([folder], tmp_path / "out", batch.RunOptions(**FAST))
    assert status == 2 and report["damaged_files"]
    texts = [p.read_text() for p in (tmp_path / "out").rglob("*") if p.suffix in (".json", ".csv", ".html")]
    for text in [*texts, caplog.text, json.dumps(report)]:
        assert "schmidt" not in text.lower() and "karl" not in text.lower() and "0047" not in text, text[:2000]
    assert "*^*_*" in json.dumps(report)


def test_a_hidden_name_never_changes_where_a_series_goes(tmp_path):
    """A patient named like a routing word: the stations, found by their descriptions (no
    BodyPartExamined), are still composed; only the names written out lose the word."""
    spine_study(tmp_path / "in", PatientName="Spine^Phantom", BodyPartExamined="")
    status, _ = batch.run([tmp_path / "in"], tmp_path / "out", batch.RunOptions(**FAST))
    assert status == 0
    (_, series), = rows(tmp_path / "out").values()
    (stitched,) = [r for r in series if r["stage"] == "stitch"]
    assert stitched["status"] == "ok" and len(stitched["stations"]) == 3
    (sid,) = rows(tmp_path / "out")
    report = json.loads((tmp_path / "out" / sid / stitched["result"]).read_text())
    assert [s["description"] for s in report["stations"]] == ["t2 sag 1", "t2 sag 2", "t2 sag 3"]


def test_memory_cap_fails_the_oversized_series_and_the_study_is_partial(tmp_path):
    uid = spine_study(tmp_path / "in")
    big = Volume(np.zeros((64, 64, 64), np.int16), np.diag([1.0, 1.0, 1.0, 1.0]))
    write_dicom_series(big.with_array(big.array, dicom={"StudyInstanceUID": uid, "BodyPartExamined": "HEAD"}),
                       tmp_path / "in" / "t1", series_description="t1 3d", series_number=2)
    # the three stations (about 20 x 20 x 50 voxels each) fit in 8 MiB; the 64^3 volume does not
    stations = [r for r in scan(tmp_path / "in").series if r.series_number != 2]
    assert batch.estimate_bytes(stations) < 8 << 20 < batch.estimate_bytes(scan(tmp_path / "in" / "t1").series)
    status, _ = batch.run([tmp_path / "in"], tmp_path / "out", batch.RunOptions(**FAST, max_memory=8 << 20))
    data = study_json(tmp_path / "out", uid)
    by_stage = {row["stage"]: row for row in data["series"]}
    assert status == 1 and data["status"] == "partial"
    assert by_stage["load"]["error_type"] == "ResourceLimitError" and "--max-memory" in by_stage["load"]["message"]
    assert by_stage["stitch"]["status"] == "ok"
    assert batch.parse_size("4M") == 4 << 20 and batch.parse_size("1.5G") == 3 << 29
    with pytest.raises(ValueError):
        batch.parse_size("lots")


# --- 4. output inside the input ---------------------------------------------------------------

def test_output_inside_the_input_is_never_read_back(tmp_path, capsys, caplog):
    studies_folder(tmp_path / "in", 1)
    out = tmp_path / "in" / "results"
    for _ in range(2):  # the second run would find the first one's DICOM composite otherwise
        status, report = batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST))
        assert status == 0 and report["studies"] == 1
    assert json.loads((out / RUN_MARKER).read_text())["schema"] == "medseg.output/1"
    # another run's output folder elsewhere in the input is recognised by its marker
    os.replace(out, tmp_path / "in" / "old")
    status, report = batch.run([tmp_path / "in"], tmp_path / "out", batch.RunOptions(**FAST))
    assert report["studies"] == 1
    assert main(["run", "-i", str(tmp_path / "out" / "x"), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert "inside the output folder" in one_error(caplog, capsys)


# --- 5. resume and the run report ------------------------------------------------------------

def test_resume_retries_failures_keeps_them_on_request_and_redoes_broken_study_json(tmp_path, monkeypatch):
    uids = studies_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    fail_compose_for(monkeypatch, {uids[0]})
    batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST))
    monkeypatch.undo()
    before = (out / uids[0] / "study.json").stat().st_mtime_ns
    status, report = batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST, resume=True, resume_skip_failed=True))
    assert report["resumed_studies"] == 3 and status == 1
    assert (out / uids[0] / "study.json").stat().st_mtime_ns == before
    (out / uids[1] / "study.json").write_text("")  # e.g. a crash of an older version mid-write
    assert len(batch_report.collect_studies(out)) == 2  # left out of the summaries, not a crash
    status, report = batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST, resume=True))
    assert status == 0 and report["resumed_studies"] == 1  # failed and broken ones redone
    assert {s for s, _ in rows(out).values()} == {"ok"} and len(rows(out)) == 3
    csv_ids = {r["study_id"] for r in csv.DictReader((out / "summary.csv").open())}
    assert csv_ids == set(uids)
    assert len(json.loads((out / "summary.json").read_text())["runs"]) == 3  # each run's own part


def test_concurrent_shards_into_one_folder_and_medseg_report(tmp_path, capsys):
    uids = studies_folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    results = {}

    def shard(i):
        results[i] = batch.run([tmp_path / "in"], out, batch.RunOptions(**FAST, shard=(i, 2)))

    threads = [threading.Thread(target=shard, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r[1]["studies"] for r in results.values()) == 4
    assert set(rows(out)) == set(uids)  # both shards' studies, whichever rebuilt last
    summary = (out / "summary.json").read_text()
    for name in ("summary.json", "summary.csv", "index.html"):
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "summary.json").read_text() == summary
    assert "4 studies: 4 ok" in capsys.readouterr().out
    assert all(uid in (out / "index.html").read_text() for uid in uids)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    studies_folder(tmp_path / "in", 4)
    batch.run([tmp_path / "in"], tmp_path / "whole", batch.RunOptions(**FAST))  # uninterrupted
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "medseg.cli", "run", "-i", str(tmp_path / "in"), "-q", "--no-n4"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "-o", str(killed)], env=env)
    deadline = time.monotonic() + 240
    def finished():  # study folders renamed into place (not the hidden .partial-* ones)
        return [p for p in killed.glob("*/study.json") if not p.parent.name.startswith(".")]

    while not finished() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "summary.json").exists()
    done = len(finished())
    assert 1 <= done < 4
    subprocess.run([*command, "-o", str(killed), "--resume", "--report", str(tmp_path / "run.json")],
                   env=env, check=True, timeout=300)
    assert json.loads((tmp_path / "run.json").read_text())["resumed_studies"] == done
    assert rows(killed) == rows(tmp_path / "whole") and len(rows(killed)) == 4
    assert not list(killed.glob(".partial-*"))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak memory of a medseg run subprocess: {peak / 1024:.0f} MiB")
