"""A hostile study folder, run through `medseg run`: damage, collisions, bad geometry, special files.

Each case is its own study, made from one good sagittal localizer (cut from
``medseg.examples.example_head``: the real Siemens XA30 T1 of the shared data, else the ICBM152
template) by one kind of damage. The run must give:
- 0 tracebacks and 0 hangs (the run has a time limit);
- the expected status per study (ok / failed / skipped / partial), never a wrong success;
- no patient name in logs, summaries or output names;
- an input tree byte-identical before and after;
- good studies beside bad ones succeed.
It prints one line per case and the totals, plus the run's peak memory (ru_maxrss of the child).

Usage: python pipelines/hostile_corpus.py [--keep DIR] [--jobs N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from medseg.demo import scan_localizer
from medseg.examples import example_head
from medseg.io import write_dicom_series

PATIENT = "Hostile^Patient^Secret"


def base_localizer(folder: Path, study_uid: str, *, series_number: int = 1, description: str = "loc sag",
                   slices: int = 5) -> list[Path]:
    study = {"StudyInstanceUID": study_uid, "FrameOfReferenceUID": generate_uid(), "PatientID": "HOSTILE-1",
             "PatientName": PATIENT, "StudyDescription": "hostile case"}
    volume = scan_localizer(example_head(), slices=slices, thickness_mm=5.0, offset_mm=1.0, dicom=study)
    write_dicom_series(volume, folder, series_description=description, series_number=series_number)
    return sorted(folder.iterdir())


def edit(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def build(root: Path) -> dict[str, str]:
    """Write every case under ``root``; returns case -> expected study status."""
    expected: dict[str, str] = {}

    def case(name: str, status: str) -> tuple[Path, str]:
        expected[name] = status
        return root / name, generate_uid()

    folder, uid = case("good", "ok")
    base_localizer(folder, uid)
    folder, uid = case("good_second", "ok")
    base_localizer(folder, uid)

    for cut in ("header", "before_pixels", "pixels", "empty", "100_bytes"):
        folder, uid = case(f"cut_{cut}", "failed")
        files = base_localizer(folder, uid)
        data = files[-1].read_bytes()
        at = data.rfind(b"\xe0\x7f\x10\x00")
        files[-1].write_bytes(data[:{"header": at // 2, "before_pixels": at, "pixels": at + 1000,
                                     "empty": 0, "100_bytes": 100}[cut]])

    folder, uid = case("duplicate_identical", "ok")
    files = base_localizer(folder, uid)
    shutil.copy(files[1], folder / "copy.dcm")
    folder, uid = case("duplicate_different", "failed")
    files = base_localizer(folder, uid)
    ds = pydicom.dcmread(files[1])
    array = ds.pixel_array.copy()
    array[10, 10] += 7
    ds.PixelData = array.tobytes()
    ds.save_as(folder / "altered.dcm")

    folder, uid = case("missing_last_slice_declared", "failed")
    files = base_localizer(folder, uid)
    for path in files:
        edit(path, ImagesInAcquisition=str(len(files)), AcquisitionNumber="1")
    last = max(files, key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    last.unlink()  # no gap is left: only the declared count shows it

    folder, uid = case("missing_slice", "failed")
    files = base_localizer(folder, uid)
    files[2].unlink()
    for tag, value in (("PixelSpacing", ["0", "0"]), ("PixelSpacing", ["-1", "-1"]),
                       ("ImageOrientationPatient", ["0"] * 6),
                       ("ImageOrientationPatient", ["0", "1", "0", "0", "1", "0"]),
                       ("ImagePositionPatient", ["1e300", "0", "0"]), ("ImagePositionPatient", None)):
        label = f"{tag}_{'missing' if value is None else '_'.join(value[:2])}".replace("-", "neg").replace(".", "p")
        folder, uid = case(f"geometry_{label}", "failed")
        for path in base_localizer(folder, uid):
            edit(path, **{tag: value})
    folder, uid = case("slope_overflow", "failed")
    for path in base_localizer(folder, uid):
        edit(path, RescaleSlope="1e39", RescaleIntercept="0")
    folder, uid = case("one_slice", "ok")
    base_localizer(folder, uid, slices=1)
    folder, uid = case("two_slices", "ok")
    base_localizer(folder, uid, slices=2)

    folder, uid = case("rle_million_frames", "failed")
    files = base_localizer(folder, uid)
    ds = pydicom.dcmread(files[0])
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.NumberOfFrames = 10**6
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(folder / "rle.dcm", enforce_file_format=True)
    for path in files:  # the study holds only the bad object
        path.unlink()

    folder, uid = case("same_number_and_description", "ok")
    base_localizer(folder / "a", uid, series_number=3, description="loc")
    base_localizer(folder / "b", uid, series_number=3, description="loc")

    folder, uid = case("ct_only", "skipped")
    for path in base_localizer(folder, uid):
        edit(path, Modality="CT", SOPClassUID=pydicom.uid.CTImageStorage)

    folder, uid = case("partial_good_and_bad", "partial")
    base_localizer(folder / "good", uid, series_number=1)
    bad = base_localizer(folder / "bad", uid, series_number=2, description="other")
    bad[0].write_bytes(bad[0].read_bytes()[:3000])

    folder, uid = case("hostile_description", "ok")
    for path in base_localizer(folder, uid):
        edit(path, SeriesDescription="../../etc/passwd\x07 " + PATIENT)

    folder, _ = case("junk_only", "none")
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not an image")
    (folder / "random.bin").write_bytes(os.urandom(4096))

    folder, _ = case("nifti_broken", "failed")
    folder.mkdir(parents=True)
    (folder / "broken.nii.gz").write_bytes(b"not gzip" * 100)
    folder, _ = case("nifti_empty", "failed")
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((0, 0, 0), np.float32), np.eye(4)), folder / "empty.nii.gz")

    folder, uid = case("sop_uids_reused_by_second_series", "ok")  # both series must be positioned
    first = base_localizer(folder / "a", uid, series_number=1)
    second = base_localizer(folder / "b", uid, series_number=2, description="copy")
    for a, b in zip(first, second):
        edit(b, SOPInstanceUID=pydicom.dcmread(a, stop_before_pixels=True).SOPInstanceUID)
    folder, _ = case("no_study_uid", "ok")
    for path in base_localizer(folder, generate_uid()):
        edit(path, StudyInstanceUID=None)

    special = root / "special_files"
    special.mkdir()
    os.mkfifo(special / "fifo")
    os.symlink("/dev/zero", special / "zero")
    os.symlink(special, special / "loop")
    expected["special_files"] = "none"
    return expected


def digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the corpus and outputs here (kept)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="medseg-hostile-"))
    corpus, output = work / "corpus", work / "out"
    shutil.rmtree(work / "corpus", ignore_errors=True)
    shutil.rmtree(output, ignore_errors=True)
    corpus.mkdir(parents=True)
    expected = build(corpus)
    before = digest(corpus)
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "medseg.cli", "run", "-i", str(corpus), "-o", str(output),
                          "--jobs", str(args.jobs), "-q"], capture_output=True, text=True, timeout=args.timeout)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    problems = []
    text = run.stdout + run.stderr
    if "Traceback" in text:
        problems.append("traceback in the output")
    written = [p for p in output.rglob("*")]
    for path in written:
        if "Hostile" in path.name or "Secret" in path.name:
            problems.append(f"patient name in an output name: {path}")
        if path.is_file() and path.suffix in (".json", ".csv", ".html", ".log") \
                and PATIENT.split("^")[0] in path.read_text(errors="ignore"):
            problems.append(f"patient name in {path.relative_to(output)}")
    if PATIENT.split("^")[0] in text:
        problems.append("patient name in the log")
    if digest(corpus) != before:
        problems.append("the input tree changed")
    from medseg.batch.run import study_id
    from medseg.io import scan

    case_of = {}
    for study in scan(corpus).studies:
        relative = Path(study.series[0].source).resolve().relative_to(corpus.resolve())
        case_of[study_id(study)] = relative.parts[0]
    summary = json.loads((output / "summary.json").read_text()) if (output / "summary.json").exists() else {}
    by_case: dict[str, list[str]] = {}
    for study_json in output.glob("*/study.json"):
        data = json.loads(study_json.read_text())
        name = case_of.get(study_json.parent.name, f"unknown:{study_json.parent.name}")
        by_case.setdefault(name, []).append(data.get("status", "?"))
        outputs = [row.get("result") for row in data.get("series", []) if row.get("status") == "ok"]
        if name == "sop_uids_reused_by_second_series" and len(outputs) != 2:
            problems.append(f"{name}: {len(outputs)} of 2 series positioned (a series vanished)")
        if len(set(outputs)) != len(outputs):
            problems.append(f"{name}: two series wrote into one output folder (a result was lost)")
    print(f"{'case':40s} {'expected':>9s} {'got':>12s}")
    wrong = 0
    for name, status in expected.items():
        got = by_case.get(name, ["none"])
        ok = all(g.split()[0] == status for g in got)
        wrong += not ok
        print(f"{name:40s} {status:>9s} {','.join(got):>12s} {'' if ok else '  <-- WRONG'}")
    print(f"\nexit status {run.returncode}; {len(expected)} cases, {wrong} not as expected; "
          f"{seconds:.1f} s; peak memory of the run {peak_mb:.0f} MB")
    print(f"summary lists {len(summary.get('studies', []))} studies")
    for problem in problems:
        print("PROBLEM:", problem)
    if run.returncode not in (0, 1, 2):
        print("PROBLEM: exit status", run.returncode)
        print(text[-3000:])
    return 1 if problems or wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
