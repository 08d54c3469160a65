"""The batch job: every study under the inputs -> routed stages -> one output folder per study.

- A study's folder is built under ``OUT/.partial-<id>``, flushed to the disk, and renamed to
  ``OUT/<id>`` only when the study is finished, so an interrupted (even SIGKILLed) run leaves no
  partial outputs. ``--resume`` skips finished studies (``ok``, ``partial``, ``skipped``), redoes
  failed ones (unless ``--resume-skip-failed``) and those whose ``study.json`` is empty or invalid.
- ``<id>`` is derived from the StudyInstanceUID (digits and dots only) or, for NIfTI input and
  malformed UIDs, a hash; never from free DICOM text. Studies whose ids collide get a hash of
  their key appended, and a finished folder of a *different* study (``study_key`` in its
  study.json) is never replaced. Series folders are unique too (:func:`medseg.io.atomic.unique_names`).
- A failing series is recorded (stage, error type, message; a bug also with its traceback) and the
  run goes on. Study status: ok, partial (some series ok, some failed), failed, skipped (nothing
  medseg handles). Exit status: 0 all ok, 1 some failures, 2 nothing succeeded; 130/143 after
  SIGINT/SIGTERM, which stop the run once the studies in progress are written.
- Memory: before loading, each series' working set is estimated from its header shape
  (:data:`BYTES_PER_VOXEL`); a series that does not fit ``--max-memory`` fails with
  ``ResourceLimitError``, and studies in parallel wait until their estimate fits.
- The run-level files (summary.csv/json, index.html) are rebuilt from every study.json in the
  output folder (:func:`medseg.batch.report.rebuild`); each invocation writes its own
  ``runs/run-*.json``. The output folder carries the marker ``.medseg-output`` and is never scanned.
- ``--jobs N`` runs N studies at once in worker threads: loading and N4 of some overlap the
  network calls of others (SimpleITK, DICOM decoding and onnxruntime release the GIL for most of
  that work), and the workers' planes are batched into shared session calls
  (:class:`medseg.infer.batching.DynamicBatcher`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
import time
import traceback
import typing
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from medseg import __version__
from medseg.batch.outcome import SeriesOutcome
from medseg.batch.report import read_study, rebuild
from medseg.batch.routing import Route, route_study
from medseg.errors import InputError, MedsegError, ResourceLimitError, os_error_message
from medseg.errors import Stage as StageName  # (medseg.pipeline.Stage is a stage function)
from medseg.io import scan
from medseg.io.atomic import (
    ensure_output_dir,
    fsync_tree,
    short_hash,
    unique_names,
    write_json_atomic,
    write_text_atomic,
)
from medseg.io.redact import redact, study_words
from medseg.io.scan import RUN_MARKER, SeriesRef, Study
from medseg.pipeline import LOCALIZER_N4, LocalizerN4
from medseg.preprocess.n4 import N4Options
from medseg.progress import progress
from medseg.spine.compose import StitchOptions
from medseg.volume import Volume

if typing.TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


Device = Literal["auto", "cpu", "cuda", "tensorrt"]  # onnxruntime providers; auto: TensorRT -> CUDA -> CPU
Precision = Literal["fp32", "fp16"]  # model variant


@dataclass(frozen=True)
class RunOptions:
    device: Device = "cpu"
    precision: Precision = "fp32"
    jobs: int = 1
    resume: bool = False
    shard: tuple[int, int] = (1, 1)  # (i, n), 1-based
    n4: bool = True
    skull_strip: bool = True
    quiet: bool = False
    resume_skip_failed: bool = False  # with resume: keep failed studies as they are
    max_memory: int | None = None  # bytes for the whole run; None: MEMORY_FRACTION of the RAM
    engine: Literal["local", "dask"] = "local"  # "local" (threads in this process) or "dask" (one task per study)
    dask: "object | None" = None  # medseg.batch.dask_engine.DaskOptions for engine="dask"
    dicom_out: bool = True  # DICOM SEG, SR and secondary captures (medseg.dicomout) for DICOM input
    # Stage options (medseg.batch.config.PipelineConfig sets them from its n4/stitch/positioning sections).
    n4_options: N4Options | None = None  # None: N4Options.fast(), the positioning profile
    stitch: StitchOptions | None = None  # None: StitchOptions() on ``device`` (stitch_options_for)
    max_difference_deg: float = 10.0  # box and line angles differing more are flagged
    localizer_n4: LocalizerN4 = LOCALIZER_N4  # N4 of a localizer planned without skull stripping
    # Plan first (``medseg listen``): the study folder is published with the plan, and the brain
    # mask and the DICOM results are left in ``StudyRecord.deferred`` for complete_deferred().
    defer_extras: bool = False


def _fast_n4() -> N4Options:
    return N4Options.fast()


def stitch_options_for(device: str, base: StitchOptions | None = None) -> StitchOptions:
    """``base`` (default ``StitchOptions()``) composing on the run's ``--device``: ``cpu`` ->
    SimpleITK on the CPU, ``cuda``/``tensorrt`` -> torch on CUDA, ``auto`` -> CUDA when present."""
    base = base or StitchOptions()
    if device == "auto":
        return dataclasses.replace(base, backend="auto", device="auto")
    if device == "cpu":
        return dataclasses.replace(base, backend="sitk", device="cpu")
    return dataclasses.replace(base, backend="torch", device="cuda")


FINISHED = ("ok", "partial", "skipped")
MEMORY_FRACTION = 0.5
# Peak bytes per voxel of a series while it is processed: the decoded volume, float32 working
# copies (bias-corrected image, N4 field, skull-stripping and CC probability volumes, resampled
# planes) and masks. Measured: a 256^3 T1 through `medseg run` (N4, skull stripping, CC) peaks at
# 1206 MiB RSS, 267 MiB of it the interpreter and the models: 59 bytes per voxel. 16 float32
# copies (64 bytes) covers it.
BYTES_PER_VOXEL = 4 * 16


def study_id(study: Study) -> str:
    uid = study.uid or ""
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "study-" + hashlib.sha1(uid.encode()).hexdigest()[:16]


def in_shard(study: Study, shard: tuple[int, int]) -> bool:
    index, count = shard
    digest = int(hashlib.sha1(study.uid.encode()).hexdigest(), 16)
    return digest % count == index - 1


def study_keys(studies: Sequence[Study]) -> list[str]:
    """A key per study that is the same in every run over the same input: the StudyInstanceUID,
    plus the sorted series keys (and files) where several studies of one run share a UID."""
    keys = [s.uid for s in studies]
    for level in (1, 2):
        if len(set(keys)) == len(keys):
            break
        for n, study in enumerate(studies):
            if keys.count(keys[n]) > 1:
                part = sorted(r.key for r in study.series) if level == 1 else sorted(
                    f for r in study.series for f in r.files)
                keys[n] = f"{keys[n]}|{','.join(part)}"
    return keys


def assign_folders(studies: Sequence[Study], keys: Sequence[str], output: Path) -> list[str]:
    """Folder ids, unique within the run and never a finished folder of another study."""
    bases = [study_id(s) for s in studies]
    ids = [b if bases.count(b) == 1 else f"{b}-{short_hash(k, 12)}" for b, k in zip(bases, keys)]
    for n, key in enumerate(keys):
        digest = key_digest(key)
        while _owner(output / ids[n]) not in (None, digest):
            log.warning("output folder %s holds another study; this one goes to a new folder", ids[n])
            ids[n] = f"{ids[n]}-{short_hash(digest + ids[n], 8)}"
    return ids


def key_digest(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()


def _owner(folder: Path) -> str | None:
    """The study_key recorded in a finished folder (None: no folder, or no valid study.json)."""
    data = read_study(folder / "study.json")
    return None if data is None else data.get("study_key")


def study_status(series_statuses: Sequence[str]) -> str:
    """ok / partial (some series ok, some failed) / failed / skipped (nothing medseg handles)."""
    ok, failed = "ok" in series_statuses, "failed" in series_statuses
    return "partial" if ok and failed else "failed" if failed else "ok" if ok else "skipped"


def failure_lines(series: Sequence[dict]) -> list[str]:
    """A log line per failed series of a study: its name, stage, error type and message (what
    study.json and summary.csv hold for it; no patient names)."""
    return [f"series {row.get('series')} failed at {row.get('stage')}: "
            f"{row.get('error_type') or 'error'}: {row.get('message', '')}"
            for row in series if row.get("status") == "failed"]


def exit_status(study_statuses: Sequence[str], damaged_files: int = 0) -> int:
    """0: every study ok; 1: some failures (or damaged files); 2: nothing succeeded."""
    if not any(s in ("ok", "partial") for s in study_statuses):
        return 2
    return 1 if damaged_files or any(s in ("failed", "partial") for s in study_statuses) else 0


def default_max_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_FRACTION)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with 1 <= i <= n.

    Raises:
        InputError: the text is not of that form.
    """
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index, count = 0, 0
    if not 1 <= index <= count:
        raise InputError(f"--shard must be i/n with 1 <= i <= n, got {text!r}")
    return index, count


def parse_size(text: str) -> int:
    """``8G``, ``512M``, ``2048K``, ``1000000`` (bytes) or ``40%`` (of the physical RAM)."""
    text = text.strip().upper().removesuffix("B")
    try:
        if text.endswith("%"):
            return int(default_max_memory() / MEMORY_FRACTION * float(text[:-1]) / 100)
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"not a size: {text!r} (e.g. 8G, 512M, 40%)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value)


def estimate_bytes(refs: Sequence[SeriesRef]) -> int:
    """Working-set estimate of processing these series, from their header shapes."""
    return sum(math.prod(int(n) for n in ref.shape) * BYTES_PER_VOXEL for ref in refs if ref.shape)


class MemoryBudget:
    """The run's memory cap: studies reserve their estimate before loading and wait while
    studies in progress hold the rest."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._cond = threading.Condition()

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.total

    def acquire(self, nbytes: int) -> None:
        with self._cond:
            while self.used and self.used + nbytes > self.total:
                self._cond.wait()
            self.used += nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.used -= nbytes
            self._cond.notify_all()


def _too_big(what: str, nbytes: int, budget: MemoryBudget) -> ResourceLimitError:
    return ResourceLimitError(f"{what}: needs about {nbytes / 2**30:.1f} GiB to process "
                              f"({BYTES_PER_VOXEL} bytes per voxel), over the run's memory cap of "
                              f"{budget.total / 2**30:.1f} GiB (--max-memory)")


@dataclass
class StudyRecord:
    study_id: str
    status: str = "ok"  # ok, partial, failed, skipped
    series: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed: bool = False  # finished by an earlier run, kept
    deferred: list["Deferred"] = field(default_factory=list)  # RunOptions.defer_extras: work left
    # the study's patient name parts, ID and birth date (medseg.io.redact), hidden in the rows'
    # messages: an error quotes input paths, and study folders are often named after the patient
    patient_words: frozenset[str] = frozenset()

    def add(self, outcome: SeriesOutcome) -> None:
        self.series.append(redact_row(outcome.to_row(), self.patient_words))

    @classmethod
    def from_json(cls, sid: str, data: dict, *, resumed: bool = False) -> "StudyRecord":
        """The record of a study.json written earlier (by an earlier run or by a worker)."""
        return cls(sid, status=data["status"], series=data["series"], seconds=data.get("seconds", {}),
                   resumed=resumed)


# the rows' free-text fields: error messages and tracebacks quote input paths
FREE_TEXT_FIELDS = ("message", "traceback", "warning", "deferred_error", "dicom_message", "dicom_errors")


def _redacted(value, words: frozenset[str]):
    if isinstance(value, str):
        return redact(value, words)
    if isinstance(value, list):
        return [_redacted(v, words) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v, words) for k, v in value.items()}
    return value


def redact_row(row: dict, words: frozenset[str]) -> dict:
    """A study.json row with the patient's identity words hidden in its free-text fields."""
    for name in FREE_TEXT_FIELDS:
        if name in row:
            row[name] = _redacted(row[name], words)
    return row


def patient_words(study: Study) -> frozenset[str]:
    return study_words(ref.study_attributes for ref in study.series)


LoadedBrain = tuple[Volume, np.ndarray]  # a bias-corrected brain image and its head mask


@dataclass(frozen=True)
class Deferred:
    """Work on one published series left for after the plan (``RunOptions.defer_extras``):
    ``run(study_folder, series_folder)`` writes it there and returns the fields it adds to the
    series' study.json entry."""

    series: str  # the series' output folder name when it was built
    run: typing.Callable[[Path, Path], dict]


def complete_deferred(record: StudyRecord, study_folder: Path,
                      renamed: dict[str, str] | None = None) -> dict[str, dict]:
    """Run the record's deferred work against the published ``study_folder`` (``renamed``: built
    folder name -> its name there). Returns the added fields per final folder name. Never raises
    for one series' failure: it is recorded in that series' fields."""
    added: dict[str, dict] = {}
    for item in record.deferred:
        name = (renamed or {}).get(item.series, item.series)
        try:
            fields = item.run(study_folder, study_folder / name)
        except Exception as exc:  # the plan is out already: record, never lose it
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))
            log.error("series %s: work after the plan failed: %s", name, redact(trace, record.patient_words))
            fields = {"deferred_error": f"{type(exc).__name__}: {exc}"}
        added[name] = redact_row(dict(fields), record.patient_words)
    record.deferred.clear()
    return added


@dataclass
class _Prepared:
    """A study's routed series with loaded (and bias-corrected) volumes or load errors."""

    route: Route
    brain: list[tuple[SeriesRef, LoadedBrain | Exception]]  # (ref, (Volume, head mask) | Exception)
    spine: list[tuple[list[SeriesRef], list[Volume] | Exception]]  # (members, [Volume] | Exception)
    seconds: dict[str, float]
    reserved: int = 0  # bytes held in the run's MemoryBudget until the study is finished
    uncorrected: set[str] = field(default_factory=set)  # keys of brain series N4 left as they were


def _fits(refs: list[SeriesRef], what: str, budget: MemoryBudget | None, held: list[int]) -> Exception | None:
    """Reserve the series' estimate within the study's share, or the error that fails them."""
    if budget is None:
        return None
    nbytes = estimate_bytes(refs)
    if not budget.fits(held[0] + nbytes):
        return _too_big(what, nbytes, budget)
    held[0] += nbytes
    return None


def _prepare(study: Study, n4: bool, budget: MemoryBudget | None = None, *, stripper=None,
             n4_options: N4Options | None = None, localizer_n4: LocalizerN4 = LOCALIZER_N4) -> _Prepared:
    """Load each series; with ``n4``, bias-correct a brain series (a localizer planned without skull
    stripping as ``localizer_n4`` says, see :data:`medseg.pipeline.LOCALIZER_N4`)."""
    from medseg.pipeline import Case, Settings, correct_bias, find_foreground, run_stages

    seconds = {"load": 0.0, "n4": 0.0}
    route = route_study(study)
    held = [0]  # the study's series are loaded together: their estimates add up
    over = {id(ref): _fits([ref], f"series {ref.key}", budget, held) for ref in route.brain}
    over_sets = [_fits(members, "spine set " + ", ".join(m.key for m in members), budget, held)
                 for members in route.spine_sets]
    if budget is not None:
        budget.acquire(held[0])
    brain: list[tuple[SeriesRef, LoadedBrain | Exception]] = []
    uncorrected: set[str] = set()
    for ref in route.brain:
        too_big = over[id(ref)]
        if too_big is not None:
            brain.append((ref, too_big))
            continue
        stage = "load"
        try:
            t = time.perf_counter()
            volume = ref.load()
            seconds["load"] += time.perf_counter() - t
            stage = "n4"
            case = run_stages(Case(volume, Settings(n4="fast" if n4 else "off", stripper=stripper,
                                                n4_options=n4_options, n4_mode=localizer_n4)),
                              (("mask", find_foreground), ("n4", correct_bias)))
            seconds["n4"] += case.seconds["total"]  # the head mask counts as N4 here, as before
            corrected, head = case.corrected, case.head
            assert corrected is not None and head is not None  # set by the two stages just run
            brain.append((ref, (corrected, head)))
            if case.bias_field is None:
                uncorrected.add(ref.key)
        except Exception as exc:  # recorded per series by the caller
            brain.append((ref, _at_stage(exc, stage)))
    spine: list[tuple[list[SeriesRef], list[Volume] | Exception]] = []
    for members, error in zip(route.spine_sets, over_sets):
        if error is not None:
            spine.append((members, error))
            continue
        try:
            t = time.perf_counter()
            spine.append((members, [m.load() for m in members]))
            seconds["load"] += time.perf_counter() - t
        except Exception as exc:
            spine.append((members, _at_stage(exc, "load")))
    return _Prepared(route, brain, spine, seconds, reserved=held[0], uncorrected=uncorrected)


def _at_stage(exc: Exception, stage: str) -> Exception:
    """Remember where an unexpected exception (a bug, not a MedsegError) happened."""
    if not isinstance(exc, MedsegError):
        with contextlib.suppress(AttributeError):
            setattr(exc, "medseg_stage", stage)  # noqa: B010  (read back with getattr)
    return exc


def series_names(study: Study) -> dict[str, str]:
    """Output folder name of each series of a study, by ``SeriesRef.key``: readable, unique by
    construction (a hash of the key where number + description collide), the same every run."""
    names = unique_names([(r.name, r.key) for r in study.series])
    if len({r.key for r in study.series}) != len(study.series):
        raise ValueError(f"study {study.uid}: series keys are not unique")  # scan guarantees it
    return dict(zip((r.key for r in study.series), names))


def _process(study: Study, prepared: _Prepared, out: Path, segmenter, record: StudyRecord,
             stripper=None, dicom_out: bool = True, options: RunOptions | None = None) -> None:
    from medseg.positioning.pipeline import position_volume, write_position_outputs
    from medseg.spine import compose
    from medseg.spine.outputs import write_stitch_outputs

    options = options or RunOptions()
    stitch = options.stitch or stitch_options_for(options.device)
    names = series_names(study)
    for ref, reason in prepared.route.skipped:
        record.add(SeriesOutcome.skipped(names[ref.key], ref.key, reason))
    seconds = record.seconds
    for ref, loaded in prepared.brain:
        if isinstance(loaded, Exception):
            record.add(SeriesOutcome.failed(names[ref.key], "load", loaded, ref.key))
            continue
        volume, head = loaded
        try:
            defer = options.defer_extras
            result = position_volume(volume, segmenter, n4=False, head_mask=head,
                                     stripper=None if defer else stripper,
                                     max_difference_deg=options.max_difference_deg)
            for stage in ("skullstrip", "segment", "angles"):
                seconds[stage] = seconds.get(stage, 0.0) + result.seconds.get(stage, 0.0)
            t = time.perf_counter()
            paths = write_position_outputs(result, out / names[ref.key])
            seconds["outputs"] = seconds.get("outputs", 0.0) + time.perf_counter() - t
            if defer:
                dicom = {}
                record.deferred.append(Deferred(names[ref.key], functools.partial(
                    _complete_position, result, head, ref, stripper, ref.key in prepared.uncorrected,
                    dicom_out, options)))
            else:
                dicom = _dicom_entry(dicom_out, ref, "write_dicom_results", out, result, ref.files,
                                     paths["qc"].parent)
            record.add(SeriesOutcome.positioned(names[ref.key], ref.key, result, paths, out, dicom))
        except Exception as exc:  # a bug too: recorded with its traceback, the next series goes on
            record.add(SeriesOutcome.failed(names[ref.key], "position", exc, ref.key))
    for number, (members, stations) in enumerate(prepared.spine, start=1):
        name = f"spine_{number:02d}"
        if isinstance(stations, Exception):
            record.add(SeriesOutcome.failed(name, "load", stations))
            continue
        t = time.perf_counter()
        try:
            composite = compose(stations, stitch)
            paths = write_stitch_outputs(composite, out / name)
            if options.defer_extras:
                dicom = {}
                preview = paths["preview"].relative_to(out / name)

                def spine_capture(root: Path, folder: Path, m: SeriesRef = members[0], p: Path = preview) -> dict:
                    return _dicom_entry(dicom_out, m, "write_spine_capture", root, folder / p, m.files, folder)

                record.deferred.append(Deferred(name, spine_capture))
            else:
                dicom = _dicom_entry(dicom_out, members[0], "write_spine_capture", out, paths["preview"],
                                     members[0].files, out / name)
            record.add(SeriesOutcome.stitched(name, [m.key for m in members], composite, paths, out, dicom))
        except Exception as exc:
            record.add(SeriesOutcome.failed(name, "stitch", exc))
        seconds["stitch"] = seconds.get("stitch", 0.0) + time.perf_counter() - t


def _complete_position(result, head: np.ndarray, ref: SeriesRef, stripper, uncorrected: bool,
                       dicom_out: bool, options: RunOptions, root: Path, folder: Path) -> dict:
    """The work after a published plan: the brain mask (N4 first when the plan's image was not
    corrected: a localizer's CC search reads it uncorrected), then the DICOM results. The plan
    itself is not recomputed; result.json gains the brain section."""
    from medseg.pipeline import Case, Settings, Stage, correct_bias, run_stages, strip_skull
    from medseg.positioning.pipeline import write_position_outputs

    fields: dict = {}
    if stripper is not None:
        settings = Settings(n4="fast" if options.n4 else "off", stripper=stripper,
                            n4_options=options.n4_options, n4_mode="full")
        stages: tuple[Stage, ...] = ((("n4", correct_bias),) if uncorrected else ()) + (("skullstrip", strip_skull),)
        case = run_stages(Case(result.volume, settings, head=head,
                               corrected=None if uncorrected else result.volume), stages)
        error = case.brain_error
        result = dataclasses.replace(result, brain=case.brain,
                                     brain_error=f"{type(error).__name__}: {error}" if error else None,
                                     seconds={**result.seconds, **{k: v for k, v in case.seconds.items()
                                                                   if k != "total"}})
        write_position_outputs(result, folder)
        fields["brain_volume_ml"] = round(result.brain.volume_ml, 1) if result.brain else None
        if result.warnings:
            fields["warning"] = "; ".join(result.warnings)
    fields.update(_dicom_entry(dicom_out, ref, "write_dicom_results", root, result, ref.files, folder))
    return fields


def _dicom_entry(enabled: bool, ref: SeriesRef, writer: str, root: Path, *args) -> dict:
    """study.json fields of the DICOM results (medseg.dicomout); never raises."""
    if not enabled:
        return {}
    if ref.kind != "dicom":
        return {"dicom_status": "skipped", "dicom_message": "NIfTI input: no source DICOM to refer to"}
    import medseg.dicomout as dicomout

    return dicomout.dicom_entry(getattr(dicomout, writer), root, *args)


def _run_study(study: Study, prepared: _Prepared, output: Path, segmenter, stripper=None, *,
               sid: str | None = None, key: str | None = None, options: RunOptions | None = None) -> StudyRecord:
    """Process one prepared study into ``OUT/.partial-<id>``, then rename it into place.

    Raises:
        OSError: the study folder could not be written (it is rolled back).
    """
    sid = sid or study_id(study)
    key = key if key is not None else study.uid
    record = StudyRecord(sid, seconds=dict(prepared.seconds), patient_words=patient_words(study))
    partial = output / f".partial-{sid}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if segmenter is None and prepared.brain:
            names = series_names(study)
            for ref, _ in prepared.brain:
                record.add(SeriesOutcome.unavailable(names[ref.key], ref.key, "model", "ModelError",
                                                     "CC model unavailable"))
            prepared.brain = []
        options = options or RunOptions()
        _process(study, prepared, partial, segmenter, record, stripper, options.dicom_out, options)
    except Exception as exc:  # an unexpected bug: recorded with its traceback, run goes on
        record.add(SeriesOutcome.failed("*", "internal", exc))
    record.status = study_status([s["status"] for s in record.series])
    _finish_study(partial, output, record, key)
    return record


def _finish_study(partial: Path, output: Path, record: StudyRecord, key: str) -> None:
    """Write the record's study.json (fsync) into ``partial``, flush the folder and rename it into
    ``OUT/<id>``; on any failure the partial folder is removed.

    Raises:
        OSError: the study folder could not be written.
    """
    try:
        write_json_atomic(partial / "study.json",
                          {"schema": "medseg.study/1", "study_id": record.study_id, "study_key": key_digest(key),
                           "status": record.status, "series": record.series,
                           "seconds": {k: round(v, 3) for k, v in record.seconds.items()}}, durable=True)
        fsync_tree(partial)
        _move_into_place(partial, output / record.study_id)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def load_models(device: Device, precision: Precision, skull_strip: bool, threads: int = 0):
    """(CC segmenter, skull stripper) for a run; either is None when its model cannot be loaded
    (logged: brain series then fail with ModelError, or get no brain mask). The stripper is None
    too when skull stripping is off or there is no segmenter. ``threads`` bounds onnxruntime's
    threads (0: its default), so that several workers of one node do not oversubscribe it."""
    from medseg.infer.runtime import load_runtime
    from medseg.preprocess.skullstrip import MODEL_NAME, SkullStripper
    from medseg.segment.infer import CCSegmenter

    try:
        segmenter = CCSegmenter(load_runtime("cc_attention_unet", device=device, precision=precision,
                                             threads=threads))
    except MedsegError as exc:
        log.error("cannot load the CC model: %s", exc)
        return None, None
    if not skull_strip:
        return segmenter, None
    try:
        return segmenter, SkullStripper(load_runtime(MODEL_NAME, device=device, precision=precision,
                                                     threads=threads))
    except MedsegError as exc:
        log.error("cannot load the skull-stripping model (brain masks left out): %s", exc)
        return segmenter, None


def process_study(study: Study, output: Path, options: RunOptions, segmenter, stripper=None, *,
                  sid: str | None = None, key: str | None = None, budget=None) -> StudyRecord:
    """One whole study (load, N4, networks, outputs) into ``OUT/<sid>``: the unit of work of both
    engines (and of ``medseg listen``). Errors are recorded in the study, never raised, except an
    OSError writing the study folder."""
    budget = budget or MemoryBudget(options.max_memory or default_max_memory())
    # Plan first: N4 as for a plan without skull stripping (that comes after, complete_deferred).
    prepared = _prepare(study, options.n4, budget, stripper=None if options.defer_extras else stripper,
                        n4_options=options.n4_options, localizer_n4=options.localizer_n4)
    try:
        return _run_study(study, prepared, output, segmenter, stripper, sid=sid, key=key, options=options)
    finally:
        budget.release(prepared.reserved)


def record_engine_failure(study: Study, output: Path, reason: str, *, sid: str, key: str) -> StudyRecord:
    """Record a study whose task the engine could not complete (its workers kept dying), so that
    it appears as failed with the reason instead of disappearing."""
    record = StudyRecord(sid, status="failed", patient_words=patient_words(study))
    for ref in study.series:
        record.add(SeriesOutcome.unavailable(ref.name, ref.key, "engine", "EngineError", reason))
    partial = output / f".partial-{sid}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _finish_study(partial, output, record, key)
    return record


def _move_into_place(partial: Path, target: Path) -> None:
    """Replace ``target`` by ``partial``; the old folder is removed only once the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(partial, target)
    with contextlib.suppress(OSError):
        from medseg.io.atomic import fsync_path

        fsync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _failed_record(sid: str, exc: BaseException, stage: StageName, words: frozenset[str]) -> StudyRecord:
    record = StudyRecord(sid, status="failed", patient_words=words)
    record.add(SeriesOutcome.failed("*", stage, exc))
    return record


class _Stop:
    """Set by SIGINT/SIGTERM: no new study starts; the ones in progress are finished."""

    def __init__(self) -> None:
        self.signum: int | None = None


@contextlib.contextmanager
def _stop_on_signals(stop: _Stop) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. run inside a service)
        return

    def handler(signum, frame):
        if stop.signum is not None:  # a second signal: stop now, like a kill (every finished study
            log.warning("%s again: stopping now", signal.Signals(signum).name)  # is complete on disk,
            os._exit(128 + signum)  # unfinished ones are redone by --resume)
        stop.signum = signum
        log.warning("%s: finishing the studies in progress, then stopping (again to stop now)",
                    signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_paths(inputs: Sequence[Path], output: Path) -> None:
    out = os.path.realpath(output)
    for path in inputs:
        real = os.path.realpath(path)
        if real == out or real.startswith(out + os.sep):
            raise InputError(f"input {path} lies inside the output folder {output}")


def _write_marker(output: Path) -> None:
    marker = output / RUN_MARKER
    if not marker.exists():
        write_text_atomic(marker, json.dumps({"schema": "medseg.output/1", "version": __version__}) + "\n")


def run(inputs: Sequence[Path], output: Path, options: RunOptions = RunOptions()) -> tuple[int, dict]:
    """Run the batch job; returns (exit status, run report). Exit: 0 all studies succeeded,
    1 some failed (each recorded), 2 nothing succeeded; 130/143 stopped by SIGINT/SIGTERM.

    Raises:
        OutputError: the output folder cannot be written. InputError: an input is inside it.
        OSError: the run-level files cannot be written (e.g. disk full).
    """
    stop = _Stop()
    with _stop_on_signals(stop):  # from the scan on: a signal always ends in the run-level files
        return _run(inputs, output, options, stop)


def _run(inputs: Sequence[Path], output: Path, options: RunOptions, stop: _Stop) -> tuple[int, dict]:
    from medseg.preprocess.skullstrip import SkullStripper
    from medseg.segment.infer import CCSegmenter

    started = time.perf_counter()
    output = Path(output)
    ensure_output_dir(output)
    _check_paths(inputs, output)
    _write_marker(output)
    t = time.perf_counter()
    found = scan(list(inputs), show_progress=not options.quiet, exclude=[output])
    scan_seconds = time.perf_counter() - t
    studies = [s for s in found.studies if in_shard(s, options.shard)]
    keys = study_keys(studies)
    sids = assign_folders(studies, keys, output)
    for sid in sids:  # only this shard's leftovers: concurrent shards may be writing theirs
        for stale in [output / f".partial-{sid}", *output.glob(f".old-{sid}-*")]:
            shutil.rmtree(stale, ignore_errors=True)
    records: list[StudyRecord] = []
    segmenter = None
    todo = []
    for study, key, sid in zip(studies, keys, sids):
        if options.resume:
            data = read_study(output / sid / "study.json")
            if data is not None and data.get("study_key") == key_digest(key) and (
                    data["status"] in FINISHED or options.resume_skip_failed):
                records.append(StudyRecord.from_json(sid, data, resumed=True))
                continue
        todo.append((study, key, sid))
    engine_report = None
    if todo and options.engine == "dask" and stop.signum is None:
        from medseg.batch.dask_engine import DaskOptions, run_dask

        dask = options.dask if isinstance(options.dask, DaskOptions) else DaskOptions()
        engine_report = run_dask(todo, output, options, dask,
                                 show_progress=not options.quiet)
        for _, _, sid in todo:
            data = read_study(output / sid / "study.json")
            if data is not None:
                records.append(StudyRecord.from_json(sid, data))
        todo = []
    # the networks are loaded only when a study has series for them (spine-only runs need none)
    stripper = None
    if stop.signum is None and any(route_study(study).brain for study, _, _ in todo):
        segmenter, stripper = load_models(options.device, options.precision, options.skull_strip)
    batcher = None
    if segmenter is not None and options.jobs > 1:
        from medseg.infer.batching import DynamicBatcher

        batcher = DynamicBatcher(segmenter.runtime, callers=options.jobs)
        segmenter = CCSegmenter(batcher)  # a DynamicBatcher is a Predictor
        if stripper is not None:
            stripper = SkullStripper(DynamicBatcher(stripper.runtime, callers=options.jobs))
    budget = MemoryBudget(options.max_memory or default_max_memory())

    def one_study(item: tuple[Study, str, str]) -> StudyRecord | None:
        study, key, sid = item
        if stop.signum is not None:
            return None  # stopped before this study started: left for --resume
        try:
            return process_study(study, output, options, segmenter, stripper, sid=sid, key=key, budget=budget)
        except Exception as exc:  # the study folder could not be written, or a bug before it
            words = patient_words(study)
            text = os_error_message(exc) if isinstance(exc, OSError) else str(exc)
            log.error("study %s: %s", sid, redact(text, words))
            return _failed_record(sid, exc, "outputs" if isinstance(exc, OSError) else "internal", words)

    # Each study runs whole (load, N4, networks, outputs) in one of --jobs workers, so decoding and
    # N4 of some studies overlap the network calls of others; with several workers their planes
    # share session calls (DynamicBatcher). Results are taken in input order. A signal stops the
    # submission of new studies; queued ones are cancelled, running ones finish and are written.
    jobs = max(1, options.jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures: dict[int, Future] = {}

        def submit(index: int) -> None:
            if index < len(todo) and index not in futures and stop.signum is None:
                futures[index] = pool.submit(one_study, todo[index])

        for i in range(jobs):
            submit(i)
        for index in progress(range(len(todo)), desc="studies", unit="study", enabled=not options.quiet):
            submit(index + jobs)
            future = futures.pop(index, None)
            if future is None or (stop.signum is not None and future.cancel()):
                continue
            record = future.result()
            if record is None:
                continue
            records.append(record)
            log.info("study %s: %s", record.study_id, record.status)
            for line in failure_lines(record.series):
                log.warning("study %s: %s", record.study_id, line)

    run_id = (f"run-{options.shard[0]}of{options.shard[1]}-"
              f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}")
    report = {
        "schema": "medseg.run/2",
        "run_id": run_id,
        "medseg_version": __version__,
        "inputs": [redact(str(p), found.patient_words) for p in inputs],
        "output": redact(str(output), found.patient_words),
        "options": {"device": options.device, "precision": options.precision, "jobs": options.jobs,
                    "resume": options.resume, "resume_skip_failed": options.resume_skip_failed,
                    "skull_strip": options.skull_strip, "max_memory": budget.total,
                    "shard": f"{options.shard[0]}/{options.shard[1]}", "n4": options.n4,
                    "n4_options": dataclasses.asdict(options.n4_options or _fast_n4()),
                    "stitch": dataclasses.asdict(options.stitch or stitch_options_for(options.device)),
                    "max_difference_deg": options.max_difference_deg, "localizer_n4": options.localizer_n4},
        "providers": segmenter.runtime.providers if segmenter else None,
        "batching": {"cc": batcher.stats.as_dict(),
                     "skullstrip": stripper.runtime.stats.as_dict() if stripper else None} if batcher else None,
        "model": {"name": segmenter.runtime.contract.name, "sha256": segmenter.runtime.contract.sha256}
        if segmenter else None,
        "skullstrip_model": {"name": stripper.runtime.contract.name,
                             "sha256": stripper.runtime.contract.sha256} if stripper else None,
        "engine": engine_report or {"engine": "local", "jobs": options.jobs},
        "studies": len(records),
        "failed_studies": sum(r.status == "failed" for r in records),
        "partial_studies": sum(r.status == "partial" for r in records),
        "resumed_studies": sum(r.resumed for r in records),
        "not_started": len(studies) - len(records),
        "interrupted": signal.Signals(stop.signum).name if stop.signum else None,
        "study_status": [{"study_id": r.study_id, "status": r.status, "resumed": r.resumed} for r in records],
        "damaged_files": [{"path": redact(p, found.patient_words), "error": redact(e, found.patient_words)}
                          for p, e in found.errors],
        "skipped_files": len(found.skipped),
        "seconds": {"scan": round(scan_seconds, 3), "total": round(time.perf_counter() - started, 3),
                    **_stage_totals(records)},
        "versions": _versions(),
    }
    write_json_atomic(output / "runs" / f"{run_id}.json", report, default=str)
    rebuild(output)
    if stop.signum is not None:
        return 128 + stop.signum, report
    return exit_status([r.status for r in records], len(found.errors)), report


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

