"""`medseg listen`: a resident DICOM Storage SCP that plans localizers as they arrive.

A scanner console (or PACS) sends images with C-STORE. The node:
1. accepts associations from allowed calling AE titles only (``allowed_callers``; empty = any),
   answers C-ECHO, and rejects a C-STORE with 0xA700 (out of resources) while its queue is full;
2. writes each file atomically into the spool (:mod:`medseg.listen.spool`) and decides when a
   series is complete (association release or a quiet period);
3. runs the batch stages of `medseg run` on the complete series of a study
   (:func:`medseg.batch.run.process_study`: localizers and 3D T1s are positioned, spine stations
   composed) in one worker thread, with the onnxruntime sessions created once and kept warm;
4. moves the outputs into ``OUT/<study id>/`` (each series folder renamed into place) and merges
   ``OUT/<study id>/study.json``, which also records per batch the time from the arrival of the
   last file to the plan written, and the time per stage;
5. optionally sends the results to a destination AE with C-STORE (:mod:`medseg.listen.send`).

A failing study is recorded and the node goes on. SIGINT/SIGTERM stop it gracefully: no new
associations, queued work finished, unfinished series left in the spool (processed at the next
start). A health line is logged every ``health_seconds`` and written to ``OUT/health.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.io.atomic import write_json_atomic
from medseg.listen.spool import CompleteOn, SeriesBatch, Spool
from medseg.pacs.config import Peer as Destination  # where results are sent: AE_TITLE@HOST:PORT

if TYPE_CHECKING:
    from medseg.batch.run import RunOptions

log = logging.getLogger(__name__)

OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC210
# Imported at start-up, so that the first series pays no lazy import (they are lazy elsewhere).
_WARM_MODULES = ("medseg.positioning.pipeline", "medseg.positioning.qc", "medseg.preprocess.n4",
                 "medseg.preprocess.normalize", "medseg.preprocess.skullstrip", "medseg.spine",
                 "medseg.spine.outputs", "medseg.batch.routing")


@dataclass(frozen=True)
class ListenOptions:
    output: Path
    spool: Path | None = None  # default OUT/.spool
    host: str = "0.0.0.0"
    port: int = 11112
    ae_title: str = "MEDSEG"
    allowed_callers: tuple[str, ...] = ()  # calling AE titles accepted; empty = any
    complete_on: CompleteOn = "association"
    quiet_seconds: float = 2.0
    queue_size: int = 4  # complete studies waiting for the worker
    send_to: Destination | None = None
    health_seconds: float = 60.0
    poll_seconds: float = 0.02
    # What is run on each study, as `medseg run` runs it (device, precision, N4, skull stripping,
    # the pipeline config's stage options); None: RunOptions(). The node plans first whatever
    # this says (defer_extras) and keeps its own log quiet.
    run: RunOptions | None = None


@dataclass
class Counters:
    started: float = field(default_factory=time.time)
    received: int = 0
    rejected: int = 0
    batches: int = 0
    failed_batches: int = 0
    last_latency_s: float | None = None


class Listener:
    """The node. ``start()`` returns once it listens; ``stop()`` ends it; ``serve()`` blocks
    until SIGINT/SIGTERM."""

    def __init__(self, options: ListenOptions):
        from medseg.batch.run import RunOptions
        from medseg.infer.runtime import ModelRuntime
        from medseg.segment.infer import CCSegmenter

        run = options.run or RunOptions()
        self.options = options
        self.output = Path(options.output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(options.spool or self.output / ".spool", complete_on=options.complete_on,
                           quiet_seconds=options.quiet_seconds)
        self.segmenter = CCSegmenter(device=run.device, precision=run.precision)
        if isinstance(self.segmenter.runtime, ModelRuntime):  # always, as created here
            self.segmenter.runtime.warm_up()
        self.stripper = None
        if run.skull_strip:
            from medseg.preprocess.skullstrip import SkullStripper

            self.stripper = SkullStripper(device=run.device, precision=run.precision)
            if isinstance(self.stripper.runtime, ModelRuntime):
                self.stripper.runtime.warm_up()
        for module in _WARM_MODULES:
            importlib.import_module(module)
        self.counters = Counters()
        self._jobs: queue.Queue[SeriesBatch] = queue.Queue(maxsize=max(1, options.queue_size))
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._job_number = 0
        # Plan first: the study folder appears with the plan; the brain mask and the DICOM
        # results follow (complete_deferred) and are added to it and to study.json.
        self._run_options = dataclasses.replace(run, quiet=True, defer_extras=True)

    # --- DICOM side -------------------------------------------------------------------------
    def _application_entity(self):
        from pynetdicom import AE, evt
        from pynetdicom.presentation import AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.options.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        ae.add_supported_context(Verification)
        ae.maximum_associations = 16
        if self.options.allowed_callers:
            ae.require_calling_aet = list(self.options.allowed_callers)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_RELEASED, self._on_released), (evt.EVT_CONN_CLOSE, self._on_closed)]
        return ae, handlers

    def _on_store(self, event) -> int:
        if self._jobs.full() or self._stop.is_set():
            self.counters.rejected += 1
            log.warning("C-STORE from %s refused: queue full (%d studies waiting)",
                        event.assoc.requestor.ae_title, self._jobs.qsize())
            return OUT_OF_RESOURCES
        try:
            ds = event.dataset
            study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # undecodable or missing the UIDs that place it
            self.counters.rejected += 1
            log.warning("C-STORE from %s refused: %s: %s", event.assoc.requestor.ae_title,
                        type(exc).__name__, exc)
            return CANNOT_UNDERSTAND
        self.spool.store(str(study), str(series), str(sop), data, id(event.assoc))
        self.counters.received += 1
        return 0x0000

    def _on_echo(self, event) -> int:
        return 0x0000

    def _on_released(self, event) -> None:
        for batch in self.spool.association_ended(id(event.assoc), released=True):
            self._enqueue(batch)

    def _on_closed(self, event) -> None:
        self.spool.association_ended(id(event.assoc), released=False)  # aborted: quiet period decides

    # --- work side --------------------------------------------------------------------------
    def _enqueue(self, batch: SeriesBatch) -> None:
        try:
            self._jobs.put_nowait(batch)
        except queue.Full:
            self.spool.put_back(batch)

    def _monitor(self) -> None:
        next_health = time.monotonic() + self.options.health_seconds
        while not self._stop.is_set():
            for batch in self.spool.due():
                self._enqueue(batch)
            if time.monotonic() >= next_health:
                self.write_health()
                next_health = time.monotonic() + self.options.health_seconds
            self._stop.wait(self.options.poll_seconds)

    def _worker(self) -> None:
        while True:
            try:
                batch = self._jobs.get(timeout=0.1)
            except queue.Empty:
                self._idle.set()
                if self._stop.is_set():
                    return
                continue
            self._idle.clear()
            try:
                self.process(batch)
            except Exception:  # never stops the node: recorded, the series are not retried
                self.counters.failed_batches += 1
                log.exception("study %s: processing failed", batch.study_uid)
                for folder in batch.folders:
                    self.spool.mark_processed(folder, {"status": "failed", "error": "internal"})
            finally:
                self._jobs.task_done()

    def process(self, batch: SeriesBatch) -> list[dict]:
        """Run the batch stages on one batch of complete series; returns the study.json job entries."""
        from medseg.batch.run import complete_deferred, process_study, study_id
        from medseg.io import scan

        self._job_number += 1
        work = self.output / ".work" / f"{os.getpid()}-{self._job_number}"
        shutil.rmtree(work, ignore_errors=True)
        t = time.perf_counter()
        found = scan([str(f) for f in batch.folders], show_progress=False)
        scan_s = time.perf_counter() - t
        entries = []
        for study in found.studies:
            record = process_study(study, work, self._run_options, self.segmenter, self.stripper)
            sid = study_id(study)
            self._drop_replaced(self.output / sid, {s["key"] for s in record.series if s.get("key")})
            series, renamed = self._merge(work / sid, self.output / sid)
            latency = time.monotonic() - batch.last_arrival if batch.last_arrival else None
            entry: dict[str, Any] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": batch.files,
                     "series": [s.get("series") for s in record.series],
                     "status": record.status,
                     "seconds": {"scan": round(scan_s, 3), **{k: round(v, 3) for k, v in record.seconds.items()}},
                     "last_arrival_to_outputs_s": round(latency, 3) if latency is not None else None}
            self._write_study_json(self.output / sid, sid, series, entry)
            self.counters.last_latency_s = latency
            log.info("study %s: %s (%s)%s", sid, record.status, ", ".join(
                f"{s.get('series')} {s.get('status')}" for s in record.series),
                f"; last file -> plan {latency:.2f} s" if latency is not None else "")
            if record.deferred:
                t = time.perf_counter()
                added = complete_deferred(record, self.output / sid, renamed)
                entry["seconds"]["after_plan"] = round(time.perf_counter() - t, 3)
                if batch.last_arrival:
                    entry["last_arrival_to_all_outputs_s"] = round(time.monotonic() - batch.last_arrival, 3)
                self._update_study_json(self.output / sid, added, entry)
            self.counters.batches += 1
            self.counters.failed_batches += record.status == "failed"
            entries.append(entry)
        for path, error in found.errors:
            log.warning("damaged file %s: %s", Path(path).name, error)
        if not found.studies:
            log.warning("study %s: no readable image series in %d file(s)", batch.study_uid, batch.files)
        for folder in batch.folders:
            self.spool.mark_processed(folder, {"status": entries[0]["status"] if entries else "no images",
                                               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        shutil.rmtree(work, ignore_errors=True)
        if self.options.send_to is not None and entries:
            from medseg.listen.send import send_results

            for study in found.studies:
                send_results(study, self.output / study_id(study), self.options.send_to,
                             calling_ae=self.options.ae_title)
        return entries

    @staticmethod
    def _drop_replaced(folder: Path, keys: set[str]) -> None:
        """Remove the earlier results of series processed again (a series that received new
        instances after it was processed): their entries in study.json and their output folders."""
        path = folder / "study.json"
        if not keys or not path.exists():
            return
        data = json.loads(path.read_text())
        kept = []
        for entry in data.get("series", []):
            if entry.get("key") not in keys:
                kept.append(entry)
                continue
            for name in {str(entry.get(k, "")).partition("/")[0] for k in ("qc", "result")} - {""}:
                shutil.rmtree(folder / name, ignore_errors=True)
        data["series"] = kept
        write_json_atomic(path, data)

    @staticmethod
    def _merge(built: Path, target: Path) -> tuple[list[dict], dict[str, str]]:
        """Move each output folder of ``built`` into ``target`` (renamed, so each appears whole);
        a name already there gets a numbered suffix. Returns the study.json series entries,
        with their paths pointing at the final names, and the names (built -> final)."""
        target.mkdir(parents=True, exist_ok=True)
        data = json.loads((built / "study.json").read_text())
        renamed = {}
        for child in sorted(built.iterdir()):
            if child.name == "study.json":
                continue
            name, n = child.name, 1
            while (target / name).exists():
                n += 1
                name = f"{child.name}_{n}"
            os.replace(child, target / name)
            renamed[child.name] = name
        series = data["series"]
        for entry in series:
            for key in ("qc", "result"):
                if key in entry:
                    head, _, rest = entry[key].partition("/")
                    entry[key] = f"{renamed.get(head, head)}/{rest}" if rest else entry[key]
        return series, renamed

    @staticmethod
    def _update_study_json(folder: Path, added: dict[str, dict], job: dict) -> None:
        """Add the fields of the work after the plan to the series entries (found by their output
        folder) and rewrite this job's entry (its timings)."""
        path = folder / "study.json"
        data = json.loads(path.read_text())
        for entry in data["series"]:
            name = str(entry.get("result", "")).partition("/")[0]
            if name in added:
                entry.update(added[name])
        if data.get("jobs"):
            data["jobs"][-1] = job
        write_json_atomic(path, data)

    @staticmethod
    def _write_study_json(folder: Path, sid: str, series: list[dict], job: dict) -> None:
        path = folder / "study.json"
        data: dict[str, Any] = (json.loads(path.read_text()) if path.exists()
                                else {"study_id": sid, "series": [], "jobs": []})
        data["series"].extend(series)
        data.setdefault("jobs", []).append(job)
        # the batch's rule (ok / partial / failed / skipped), over every series the study has had
        from medseg.batch.run import study_status

        data["status"] = study_status([s["status"] for s in data["series"]])
        write_json_atomic(path, data)

    # --- life cycle -------------------------------------------------------------------------
    def health(self) -> dict:
        c = self.counters
        return {"ae_title": self.options.ae_title, "port": self.port, "uptime_s": round(time.time() - c.started, 1),
                "received_files": c.received, "refused_stores": c.rejected, "queued_studies": self._jobs.qsize(),
                "pending_series": self.spool.pending(), "batches": c.batches, "failed_batches": c.failed_batches,
                "last_latency_s": None if c.last_latency_s is None else round(c.last_latency_s, 3)}

    def write_health(self) -> dict:
        data = self.health()
        log.info("health: " + ", ".join(f"{k} {v}" for k, v in data.items()))
        write_json_atomic(self.output / "health.json", data)
        return data

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self.options.port

    def start(self) -> "Listener":
        ae, handlers = self._application_entity()
        self._server = ae.start_server((self.options.host, self.options.port), block=False, evt_handlers=handlers)
        for batch in self.spool.leftovers():
            log.info("spool: %d series of study %s received before the last stop: processing them",
                     len(batch.folders), batch.study_uid)
            self._enqueue(batch)
        for target in (self._worker, self._monitor):
            thread = threading.Thread(target=target, name=f"medseg-listen-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listening as %s on port %d (allowed callers: %s; series complete on %s)", self.options.ae_title,
                 self.port, ", ".join(self.options.allowed_callers) or "any", self.options.complete_on
                 + ("" if self.options.complete_on == "association" else f" {self.options.quiet_seconds:g} s"))
        return self

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is pending, queued or running (tests, benchmarks)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.spool.pending() == 0 and self._jobs.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop accepting, finish the queued studies, end the threads."""
        if self._server is not None:
            self._server.shutdown()
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.spool.pending():
            log.info("stopped with %d unfinished series in the spool (processed at the next start)",
                     self.spool.pending())
        self.write_health()

    def serve(self) -> int:
        """Run until SIGINT/SIGTERM; returns the exit status (0)."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        while not stop.wait(0.5):
            pass
        log.info("stopping: finishing queued studies")
        self.stop()
        return 0
