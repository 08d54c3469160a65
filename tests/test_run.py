"""`medseg run` end to end on a generated study folder; resume after an interruption."""

import csv
import json

import numpy as np
import pytest
from pydicom.uid import generate_uid

from medseg.batch import run as batch
from medseg.cli import main
from medseg.io import write_dicom_series
from medseg.synth.phantom import HeadPhantom, phantom_volume, sagittal_affine
from medseg.synth.stations import StationSpec, make_stations
from medseg.volume import Volume, VolumeMeta
from tests.conftest import DATA, REPO

pytestmark = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                reason="no shipped CC model")


def _localizer():
    """A real held-out head as a 5 x 5 mm localizer when shared data is present; else the phantom."""
    subject_dir = DATA / "brain" / "fs-training" / "sub-09"
    if subject_dir.exists():
        from medseg.segment.data import Subject

        volume, _ = Subject.load(subject_dir).sample_localizer(rotation_deg=12.0, midline_offset_mm=1.0)
        return volume.with_array(np.rint(np.asarray(volume.array)).astype(np.int16)), True
    image, _ = phantom_volume(HeadPhantom(pitch_deg=12), (256, 256, 5), sagittal_affine((256, 256, 5), (1, 1, 5)))
    return image, False


def make_study_folder(root):
    brain = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
             "PatientName": "Secret^Person", "PatientID": "P1"}
    localizer, real = _localizer()
    write_dicom_series(localizer.with_array(localizer.array, dicom=brain), root / "brain" / "loc",
                       series_description="localizer sag", series_number=1)
    t1, _ = phantom_volume(HeadPhantom(), (96, 96, 60), sagittal_affine((96, 96, 60), (2.5, 2.5, 2.5)))
    write_dicom_series(t1.with_array(t1.array, dicom=brain), root / "brain" / "t1",
                       series_description="t1 3d", series_number=2)
    # an MR series with no anatomy: a uniform cylinder (a "bottle" phantom), sagittal slices
    yy, zz = np.mgrid[0:128, 0:128]
    bottle = np.repeat((((yy - 64) ** 2 + (zz - 64) ** 2) < 50 ** 2)[:, :, None] * 800, 5, axis=2)
    bottle_affine = sagittal_affine((128, 128, 5), (2.0, 2.0, 5.0))
    write_dicom_series(Volume(bottle.astype(np.int16), bottle_affine, VolumeMeta(modality="MR", dicom=brain)),
                       root / "brain" / "bottle", series_description="bottle sag", series_number=4)
    ct = Volume(np.zeros((16, 16, 4), np.int16), np.eye(4), VolumeMeta(modality="CT"))
    write_dicom_series(ct.with_array(ct.array, dicom=brain), root / "brain" / "ct", series_description="ct",
                       series_number=3)
    victim = sorted((root / "brain" / "loc").iterdir())[0]
    (root / "brain" / "broken.dcm").write_bytes(victim.read_bytes()[:-500])
    (root / "brain" / "notes.txt").write_text("not an image")
    rng = np.random.default_rng(1)
    from scipy import ndimage

    texture = ndimage.gaussian_filter(rng.normal(size=(28, 28, 150)), 2.0)
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [20.0, -20.0, -150.0]
    source = Volume(((texture - texture.min()) / np.ptp(texture) * 1000 + 100).astype(np.float32), affine)
    spine = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(), "BodyPartExamined": "SPINE"}
    specs = [StationSpec(148, 40, 1.2, 2.0), StationSpec(60, -60, 1.5, 2.5, table_error_mm=(0, 0, 2.0)),
             StationSpec(-40, -148, 1.0, 2.0)]
    for number, station in zip((11, 12, 13), make_stations(source, specs).stations):
        write_dicom_series(station.with_array(station.array, dicom=spine), root / "spine" / f"s{number}",
                           series_description=f"t2 sag spine {number - 10}", series_number=number)
    return brain["StudyInstanceUID"], spine["StudyInstanceUID"], real


def test_run_end_to_end(tmp_path, capsys, caplog):
    brain_uid, spine_uid, real = make_study_folder(tmp_path / "in")
    before = sorted(p.name for p in (tmp_path / "in").rglob("*"))
    out = tmp_path / "out"
    status = main(["run", "-i", str(tmp_path / "in"), "-o", str(out), "-q", "--report", str(tmp_path / "run.json")])
    assert status == 1  # the damaged file and the bottle are failures, recorded
    assert sorted(p.name for p in (tmp_path / "in").rglob("*")) == before  # inputs untouched
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["providers"] == ["CPUExecutionProvider"] and report["studies"] == 2
    assert any("broken.dcm" in d["path"] for d in report["damaged_files"])
    brain = json.loads((out / brain_uid / "study.json").read_text())
    by_series = {row["series"]: row for row in brain["series"]}
    assert by_series["0003_ct"]["status"] == "skipped" and "modality CT" in by_series["0003_ct"]["message"]
    localizer = by_series["0001_localizer_sag"]
    if real:
        assert localizer["status"] == "ok", localizer
        assert (out / brain_uid / localizer["qc"]).exists()
        result = json.loads((out / brain_uid / localizer["result"]).read_text())
        assert result["schema"] == "medseg.position/1" and result["midsagittal"]["kind"] == "localizer"
        assert 300 < result["measurements"]["area_mm2"] < 1500
    assert by_series["0002_t1_3d"]["stage"] in ("position", "segment")  # routed to positioning
    bottle = by_series["0004_bottle_sag"]
    assert bottle["status"] == "failed" and bottle["error_type"] == "NoCCFoundError", bottle
    # the log says why, per failed series, even with -q (and names no patient)
    assert any(r.levelname == "WARNING" and brain_uid in r.getMessage() and "0004_bottle_sag failed at "
               f"{bottle['stage']}: NoCCFoundError" in r.getMessage() for r in caplog.records), caplog.text
    assert "Secret" not in caplog.text
    spine = json.loads((out / spine_uid / "study.json").read_text())
    (composite,) = [row for row in spine["series"] if row["stage"] == "stitch"]
    assert composite["status"] == "ok" and (out / spine_uid / composite["qc"]).exists()
    assert abs(composite["corrections_mm"][1][2] - 2.0) < 0.5
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["study_id"] for r in rows} == {brain_uid, spine_uid}
    page = (out / "index.html").read_text()
    assert "Secret" not in page and "spine_01/preview.png" in page
    assert not list(out.glob(".partial-*"))


def test_resume_after_an_interrupted_run(tmp_path, monkeypatch):
    make_study_folder(tmp_path / "in")
    out = tmp_path / "out"
    calls = {"n": 0}
    original = batch._process

    def interrupt_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(batch, "_process", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        batch.run([tmp_path / "in"], out, batch.RunOptions(quiet=True))
    done = [p for p in out.iterdir() if (p / "study.json").exists()]
    assert len(done) == 1
    first_mtime = (done[0] / "study.json").stat().st_mtime_ns
    monkeypatch.setattr(batch, "_process", original)
    # The phantom brain study may fail (no CC on it); which study ran first depends on its random
    # UIDs. A finished study is kept by --resume, a failed one only with --resume-skip-failed.
    failed = json.loads((done[0] / "study.json").read_text())["status"] == "failed"
    status, report = batch.run([tmp_path / "in"], out,
                               batch.RunOptions(quiet=True, resume=True, resume_skip_failed=failed))
    assert report["studies"] == 2
    assert (done[0] / "study.json").stat().st_mtime_ns == first_mtime  # not redone
    assert not list(out.glob(".partial-*"))
    assert report["resumed_studies"] == 1  # the run-level files list both studies
    assert len(json.loads((out / "summary.json").read_text())["studies"]) == 2


def test_shards_split_the_studies(tmp_path):
    make_study_folder(tmp_path / "in")
    ids = set()
    for shard in ((1, 2), (2, 2)):
        status, report = batch.run([tmp_path / "in"], tmp_path / f"out{shard[0]}",
                                   batch.RunOptions(quiet=True, shard=shard, n4=False))
        ids |= {p.name for p in (tmp_path / f"out{shard[0]}").iterdir() if (p / "study.json").exists()}
    assert len(ids) == 2


def test_parallel_studies_share_batched_calls_and_give_the_same_results(tmp_path):
    """--jobs 2: studies run side by side, their planes go through one DynamicBatcher; the
    results equal those of a sequential run."""
    *_, real = make_study_folder(tmp_path / "a")
    make_study_folder(tmp_path / "b")
    outputs = {}
    for jobs in (1, 2):
        status, report = batch.run([tmp_path / "a", tmp_path / "b"], tmp_path / f"out{jobs}",
                                   batch.RunOptions(quiet=True, jobs=jobs, n4=False))
        assert report["studies"] == 4
        rows = json.loads((tmp_path / f"out{jobs}" / "summary.json").read_text())["studies"]
        outputs[jobs] = {(r["study_id"], s["series"]): (s["status"], s.get("final_angle_deg"))
                         for r in rows for s in r["series"]}
        if jobs == 2 and real:  # the phantom planes without shared data never reach the network
            assert report["batching"]["cc"]["requests"] > 0 and report["batching"]["cc"]["session_calls"] > 0
    assert outputs[1] == outputs[2]
