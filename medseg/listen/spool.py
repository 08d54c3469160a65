"""The spool of a resident DICOM node: received files on disk, and when a series is complete.

Layout: ``SPOOL/<study>/<series>/<sop instance>.dcm``. Each folder name is the UID itself when it is
a well-formed UID (digits and dots), else a hash of it: no free DICOM text reaches the file system.
A file is written to a temporary name beside its target and renamed, so a series folder never
holds a partial file. A series that has been processed gets a ``.processed`` marker (JSON): it is
never processed again by accident, neither after instances sent again nor after a restart; a new
instance arriving after it was processed (a series sent over several associations) removes the
marker, and the series is processed again with all its instances.

Completion (``complete_on``):
- ``"association"``: the series that an association delivered are complete when it is released;
  when it is aborted instead, they complete after ``quiet_seconds`` without a new file;
- ``"quiet"``: a study's pending series are complete once no file of that study has arrived for
  ``quiet_seconds`` (for consoles that keep one association open).
Completed series are handed on grouped by study, so the stations of a spine set sent together are
composed together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

CompleteOn = Literal["association", "quiet"]
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MARKER = ".processed"


def uid_folder(uid: str | None) -> str:
    """A folder name for a UID: the UID when well formed (<= 64 chars), else a short hash."""
    uid = str(uid or "").strip()
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha1(uid.encode()).hexdigest()[:16]


def write_bytes_atomic(target: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``target`` and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


@dataclass
class SeriesState:
    """A series being received."""

    study_uid: str
    series_uid: str
    folder: Path
    files: int = 0
    last_arrival: float = 0.0  # time.monotonic() of the newest file
    associations: set[int] = field(default_factory=set)  # open associations delivering it
    orphaned: bool = False  # an association delivering it was aborted


@dataclass(frozen=True)
class SeriesBatch:
    """Complete series of one study, handed on together."""

    study_uid: str
    folders: tuple[Path, ...]
    files: int
    last_arrival: float  # monotonic time of the newest file in the batch


def _differs(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size != len(data) or path.read_bytes() != data
    except OSError:
        return True


class Spool:
    """Received files and the completion rule (thread-safe; handlers call it concurrently)."""

    def __init__(self, root: Path, *, complete_on: CompleteOn = "association", quiet_seconds: float = 2.0):
        if complete_on not in ("association", "quiet"):
            raise ValueError(f"complete_on must be 'association' or 'quiet', got {complete_on!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.complete_on = complete_on
        self.quiet_seconds = float(quiet_seconds)
        self._lock = threading.Lock()
        self._pending: dict[Path, SeriesState] = {}
        self._late: set[Path] = set()  # processed series that received more files (warned once)

    def store(self, study_uid: str, series_uid: str, sop_uid: str, data: bytes, association: int) -> Path:
        """Write one received file (``data``: a whole DICOM file) and note its arrival."""
        folder = self.root / uid_folder(study_uid) / uid_folder(series_uid)
        path = folder / f"{uid_folder(sop_uid)}.dcm"
        resent = path.exists()
        if resent and _differs(path, data):
            # DICOM's rule (and Orthanc's with OverwriteInstances): the newer copy replaces the
            # earlier one. Said, because a damaged re-send then fails an intact series loudly.
            log.warning("series %s: instance %s received again with different content: the newer "
                        "copy replaces the earlier one", series_uid, sop_uid)
        target = write_bytes_atomic(path, data)
        with self._lock:
            if (folder / MARKER).exists():
                if resent:  # an instance it already had: the series is not processed twice
                    if folder not in self._late:
                        self._late.add(folder)
                        log.warning("series %s was already processed: instances sent again are kept in "
                                    "the spool and not processed again", series_uid)
                    return target
                # a new instance: the series was processed incomplete; it is processed again, whole
                log.warning("series %s received a new instance after it was processed: it will be "
                            "processed again with all its instances", series_uid)
                (folder / MARKER).unlink(missing_ok=True)
                self._late.discard(folder)
            state = self._pending.setdefault(folder, SeriesState(study_uid, series_uid, folder))
            state.files += not resent  # an instance sent again is still one file
            state.last_arrival = time.monotonic()
            state.associations.add(association)
        return target

    def association_ended(self, association: int, *, released: bool) -> list[SeriesBatch]:
        """An association was released (or aborted): the batches it completes."""
        with self._lock:
            done = []
            for state in self._pending.values():
                if association in state.associations:
                    state.associations.discard(association)
                    if not released:
                        state.orphaned = True
                    elif self.complete_on == "association" and not state.associations:
                        done.append(state)
            return self._take(done)

    def due(self, now: float | None = None) -> list[SeriesBatch]:
        """Batches complete by the quiet-period rule (polled by the node)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            newest: dict[str, float] = {}
            for state in self._pending.values():
                newest[state.study_uid] = max(newest.get(state.study_uid, 0.0), state.last_arrival)
            done = []
            for state in self._pending.values():
                quiet = now - newest[state.study_uid] >= self.quiet_seconds
                if self.complete_on == "quiet" and quiet:
                    done.append(state)
                elif state.orphaned and not state.associations and now - state.last_arrival >= self.quiet_seconds:
                    done.append(state)
            return self._take(done)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def put_back(self, batch: SeriesBatch) -> None:
        """A batch that could not be queued: pending again (tried at the next poll)."""
        with self._lock:
            for folder in batch.folders:
                self._pending.setdefault(folder, SeriesState(batch.study_uid, folder.name, folder, files=1,
                                                             last_arrival=batch.last_arrival, orphaned=True))

    def leftovers(self) -> list[SeriesBatch]:
        """Series folders on disk without a processed marker (received before a stop), by study."""
        by_study: dict[str, list[Path]] = {}
        for folder in sorted(p for p in self.root.glob("*/*") if p.is_dir()):
            if not (folder / MARKER).exists() and folder not in self._pending and any(folder.glob("*.dcm")):
                by_study.setdefault(folder.parent.name, []).append(folder)
        return [SeriesBatch(study, tuple(folders), sum(len(list(f.glob("*.dcm"))) for f in folders), 0.0)
                for study, folders in by_study.items()]

    @staticmethod
    def mark_processed(folder: Path, info: dict) -> None:
        write_bytes_atomic(folder / MARKER, json.dumps(info, indent=2).encode())

    def _take(self, states: list[SeriesState]) -> list[SeriesBatch]:
        by_study: dict[str, list[SeriesState]] = {}
        for state in states:
            by_study.setdefault(state.study_uid, []).append(state)
            del self._pending[state.folder]
        return [SeriesBatch(study, tuple(s.folder for s in group), sum(s.files for s in group),
                            max(s.last_arrival for s in group)) for study, group in by_study.items()]
