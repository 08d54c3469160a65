"""The batch job: every study under the inputs -> routed stages -> one output folder per study.

- A study's folder is built under ``OUT/.partial-<id>`` and renamed to ``OUT/<id>`` only when the
  study is finished, so an interrupted run leaves no partial outputs; ``--resume`` skips studies
  whose folder exists and clears stale partial folders.
- ``<id>`` is derived from the StudyInstanceUID (digits and dots only) or, for NIfTI input and
  malformed UIDs, a hash; never from free DICOM text.
- A failing series is recorded (stage, error type, message) and the run goes on.
- ``--jobs N`` runs N studies at once in worker threads: loading and N4 of some overlap the
  network calls of others (SimpleITK, DICOM decoding and onnxruntime release the GIL for most of
  that work), and the workers' planes are batched into shared session calls
  (:class:`medseg.infer.batching.DynamicBatcher`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from medseg import __version__
from medseg.batch.report import write_index, write_summaries
from medseg.batch.routing import Route, route_study
from medseg.errors import MedsegError
from medseg.io import scan
from medseg.io.atomic import safe_name, write_text_atomic
from medseg.io.scan import SeriesRef, Study
from medseg.progress import progress

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    precision: str = "fp32"
    jobs: int = 1
    resume: bool = False
    shard: tuple[int, int] = (1, 1)  # (i, n), 1-based
    n4: bool = True
    skull_strip: bool = True
    quiet: bool = False


def study_id(study: Study) -> str:
    uid = study.uid or ""
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "study-" + hashlib.sha1(uid.encode()).hexdigest()[:16]


def in_shard(study: Study, shard: tuple[int, int]) -> bool:
    index, count = shard
    digest = int(hashlib.sha1(study.uid.encode()).hexdigest(), 16)
    return digest % count == index - 1


@dataclass
class StudyRecord:
    study_id: str
    status: str = "ok"  # ok, failed, skipped, resumed
    series: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, **entry) -> None:
        self.series.append(entry)


@dataclass
class _Prepared:
    """A study's routed series with loaded (and bias-corrected) volumes or load errors."""

    route: Route
    brain: list[tuple[SeriesRef, object]]  # (ref, (Volume, head mask) | Exception)
    spine: list[tuple[list[SeriesRef], object]]  # (members, [Volume] | Exception)
    seconds: dict[str, float]


def _prepare(study: Study, n4: bool) -> _Prepared:
    from medseg.preprocess.n4 import N4Options, correct_bias_field
    from medseg.preprocess.normalize import foreground_mask

    seconds = {"load": 0.0, "n4": 0.0}
    route = route_study(study)
    brain = []
    for ref in route.brain:
        try:
            t = time.perf_counter()
            volume = ref.load()
            seconds["load"] += time.perf_counter() - t
            t = time.perf_counter()
            head = foreground_mask(volume)
            if n4:
                volume = correct_bias_field(volume, head, options=N4Options.fast())[0]
            seconds["n4"] += time.perf_counter() - t
            brain.append((ref, (volume, head)))
        except Exception as exc:  # recorded per series by the caller
            brain.append((ref, exc))
    spine = []
    for members in route.spine_sets:
        try:
            t = time.perf_counter()
            spine.append((members, [m.load() for m in members]))
            seconds["load"] += time.perf_counter() - t
        except Exception as exc:
            spine.append((members, exc))
    return _Prepared(route, brain, spine, seconds)


def _error_entry(ref_name: str, stage: str, exc: BaseException) -> dict:
    return {"series": ref_name, "stage": getattr(exc, "stage", stage), "status": "failed",
            "error_type": type(exc).__name__, "message": str(exc)}


def _process(study: Study, prepared: _Prepared, out: Path, segmenter, record: StudyRecord,
             stripper=None) -> None:
    from medseg.positioning.pipeline import position_volume, write_position_outputs
    from medseg.spine import compose
    from medseg.spine.outputs import write_stitch_outputs

    for ref, reason in prepared.route.skipped:
        record.add(series=ref.name, key=ref.key, stage="route", status="skipped", message=reason)
    seconds = record.seconds
    for ref, loaded in prepared.brain:
        if isinstance(loaded, Exception):
            record.add(**_error_entry(ref.name, "load", loaded), key=ref.key)
            continue
        volume, head = loaded
        try:
            result = position_volume(volume, segmenter, n4=False, head_mask=head, stripper=stripper)
            for stage in ("skullstrip", "segment", "angles"):
                seconds[stage] = seconds.get(stage, 0.0) + result.seconds.get(stage, 0.0)
            t = time.perf_counter()
            paths = write_position_outputs(result, out / safe_name(ref.name))
            seconds["outputs"] = seconds.get("outputs", 0.0) + time.perf_counter() - t
            final = result.localization.final
            record.add(series=ref.name, key=ref.key, stage="position", status="ok",
                       kind=result.segmentation.kind, final_angle_deg=round(final.angle_deg, 3),
                       box_angle_deg=round(result.localization.box.angle_deg, 3),
                       line_angle_deg=round(result.localization.line.angle_deg, 3),
                       consistent=result.localization.consistent,
                       cc_area_mm2=round(result.measurements.area_mm2, 1),
                       confidence=round(float(result.segmentation.confidence), 4),
                       brain_volume_ml=round(result.brain.volume_ml, 1) if result.brain else None,
                       **({"warning": result.brain_error} if result.brain_error else {}),
                       qc=str(paths["qc"].relative_to(out)), result=str(paths["result"].relative_to(out)))
        except MedsegError as exc:
            record.add(**_error_entry(ref.name, "position", exc), key=ref.key)
    for number, (members, loaded) in enumerate(prepared.spine, start=1):
        name = f"spine_{number:02d}"
        if isinstance(loaded, Exception):
            record.add(**_error_entry(name, "load", loaded))
            continue
        t = time.perf_counter()
        try:
            composite = compose(loaded)
            paths = write_stitch_outputs(composite, out / name)
            record.add(series=name, stage="stitch", status="ok", stations=[m.key for m in members],
                       corrections_mm=[s.correction_mm for s in composite.stations],
                       qc=str(paths["preview"].relative_to(out)), result=str(paths["report"].relative_to(out)))
        except MedsegError as exc:
            record.add(**_error_entry(name, "stitch", exc))
        seconds["stitch"] = seconds.get("stitch", 0.0) + time.perf_counter() - t


def _run_study(study: Study, prepared: _Prepared, output: Path, segmenter, stripper=None) -> StudyRecord:
    """Process one prepared study into ``OUT/.partial-<id>``, then rename it into place."""
    sid = study_id(study)
    record = StudyRecord(sid, seconds=dict(prepared.seconds))
    partial = output / f".partial-{sid}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if segmenter is None and prepared.brain:
            for ref, _ in prepared.brain:
                record.add(series=ref.name, key=ref.key, stage="model", status="failed",
                           error_type="ModelError", message="CC model unavailable")
            prepared.brain = []
        _process(study, prepared, partial, segmenter, record, stripper)
    except Exception as exc:  # an unexpected bug: recorded with its traceback, run goes on
        record.add(series="*", stage="internal", status="failed", error_type=type(exc).__name__,
                   message=str(exc), traceback=traceback.format_exc(limit=5))
    statuses = [s["status"] for s in record.series]
    record.status = ("failed" if "failed" in statuses else "ok" if "ok" in statuses else "skipped")
    write_text_atomic(partial / "study.json", json.dumps(
        {"study_id": sid, "status": record.status, "series": record.series,
         "seconds": {k: round(v, 3) for k, v in record.seconds.items()}}, indent=2))
    target = output / sid
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return record


def run(inputs: Sequence[Path], output: Path, options: RunOptions = RunOptions()) -> tuple[int, dict]:
    """Run the batch job; returns (exit status, run report). Exit: 0 all studies succeeded,
    1 some failed (each recorded), 2 nothing usable found."""
    from medseg.segment.infer import CCSegmenter

    started = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    t = time.perf_counter()
    found = scan(list(inputs), show_progress=not options.quiet)
    scan_seconds = time.perf_counter() - t
    studies = [s for s in found.studies if in_shard(s, options.shard)]
    records: list[StudyRecord] = []
    segmenter = None
    todo = []
    for study in studies:
        sid = study_id(study)
        if options.resume and (output / sid / "study.json").exists():
            records.append(StudyRecord(sid, status="resumed"))
            continue
        todo.append(study)
    if todo:
        try:
            segmenter = CCSegmenter(device=options.device, precision=options.precision)
        except MedsegError as exc:
            log.error("cannot load the CC model: %s", exc)
    stripper = None
    if todo and segmenter is not None and options.skull_strip:
        from medseg.preprocess.skullstrip import SkullStripper

        try:
            stripper = SkullStripper(device=options.device, precision=options.precision)
        except MedsegError as exc:
            log.error("cannot load the skull-stripping model (brain masks left out): %s", exc)
    batcher = None
    if segmenter is not None and options.jobs > 1:
        from medseg.infer.batching import DynamicBatcher

        batcher = DynamicBatcher(segmenter.runtime, callers=options.jobs)
        segmenter = CCSegmenter(batcher)
        if stripper is not None:
            stripper = type(stripper)(DynamicBatcher(stripper.runtime, callers=options.jobs))

    def one_study(study: Study) -> StudyRecord:
        return _run_study(study, _prepare(study, options.n4), output, segmenter, stripper)

    # Each study runs whole (load, N4, networks, outputs) in one of --jobs workers, so decoding and
    # N4 of some studies overlap the network calls of others; with several workers their planes
    # share session calls (DynamicBatcher). Results are taken in input order.
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures: dict[int, Future] = {}

        def submit(index: int) -> None:
            if index < len(todo) and index not in futures:
                futures[index] = pool.submit(one_study, todo[index])

        for i in range(max(1, options.jobs)):
            submit(i)
        for index in progress(range(len(todo)), desc="studies", unit="study", enabled=not options.quiet):
            submit(index + max(1, options.jobs))
            record = futures.pop(index).result()
            records.append(record)
            log.info("study %s: %s", record.study_id, record.status)

    for record in records:
        if record.status == "resumed":
            data = json.loads((output / record.study_id / "study.json").read_text())
            record.series, record.seconds = data["series"], data.get("seconds", {})
            record.status = f"{data['status']} (resumed)"
    report = {
        "schema": "medseg.run/1",
        "medseg_version": __version__,
        "inputs": [str(p) for p in inputs],
        "output": str(output),
        "options": {"device": options.device, "precision": options.precision, "jobs": options.jobs,
                    "resume": options.resume, "skull_strip": options.skull_strip,
                    "shard": f"{options.shard[0]}/{options.shard[1]}", "n4": options.n4},
        "providers": segmenter.runtime.providers if segmenter else None,
        "batching": {"cc": batcher.stats.as_dict(),
                     "skullstrip": stripper.runtime.stats.as_dict() if stripper else None} if batcher else None,
        "model": {"name": segmenter.runtime.contract["name"], "sha256": segmenter.runtime.contract["sha256"]}
        if segmenter else None,
        "skullstrip_model": {"name": stripper.runtime.contract["name"],
                             "sha256": stripper.runtime.contract["sha256"]} if stripper else None,
        "studies": len(records),
        "failed_studies": sum(r.status.startswith("failed") for r in records),
        "damaged_files": [{"path": p, "error": e} for p, e in found.errors],
        "skipped_files": len(found.skipped),
        "seconds": {"scan": round(scan_seconds, 3), "total": round(time.perf_counter() - started, 3),
                    **_stage_totals(records)},
        "versions": _versions(),
    }
    write_summaries(records, output, report)
    write_index(records, output)
    if not records:
        return 2, report
    failed = report["failed_studies"] > 0 or bool(found.errors)
    return (1 if failed else 0), report


def _stage_totals(records: list[StudyRecord]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for record in records:
        for stage, value in record.seconds.items():
            totals[stage] = round(totals.get(stage, 0.0) + value, 3)
    return totals


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for package in ("numpy", "torch", "onnxruntime-gpu", "onnxruntime", "SimpleITK", "pydicom", "nibabel",
                    "monai", "opencv-python-headless"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    return versions
