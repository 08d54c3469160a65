"""The transport-independent stages of ``medseg pacs`` (one loop, two transports).

Stages (plain functions):
1. ``transport.query``: study search (by StudyDate, ModalitiesInStudy, StudyInstanceUID);
2. :func:`retrieve_study`: the transport's instances into ``OUT/cache/<study uid>/`` (one file per
   instance, a ``.complete`` marker when the whole study is there: a rerun does not fetch it again);
3. :func:`medseg.batch.run.run` on the cached studies with ``resume`` on, into ``OUT/results``
   (a rerun keeps the results, and so their UIDs);
4. :func:`send_results`: every DICOM result of the study (``*/dicom/*.dcm`` and the spine
   composite series) through ``transport.store``, one instance at a time, with bounded retries and
   exponential backoff, recorded in ``OUT/send/<study uid>.json``; instances recorded as sent are
   not sent again.

A transport (:class:`Transport`) is DICOMweb (:mod:`medseg.pacs.dicomweb`) or DIMSE
(:mod:`medseg.pacs.dimse`); each raises :class:`PacsError` for anything that went wrong.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import pydicom

from medseg.io.atomic import atomic_path
from medseg.pacs.config import PacsConfig, PacsError
from medseg.pacs.sendlog import SendLog

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
RESULT_GLOBS = ("*/dicom/*.dcm", "*/composite_dicom/*.dcm")


@dataclass(frozen=True)
class StudyQuery:
    study_uids: tuple[str, ...] = ()
    date: str = ""  # YYYYMMDD or YYYYMMDD-YYYYMMDD
    modality: str = ""  # ModalitiesInStudy, e.g. MR
    limit: int = 100


@dataclass
class SendSummary:
    sent: int = 0
    already_sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Transport(Protocol):
    """What the loop needs of a PACS connection."""

    name: str  # where it goes, without credentials (send logs, pacs.json)

    def query(self, query: StudyQuery) -> list[str]:
        """StudyInstanceUIDs (as found; checked by :func:`query_studies`)."""

    def retrieve(self, study_uid: str, save: Callable[[pydicom.Dataset], None]) -> None:
        """Every instance of the study, each handed to ``save``."""

    def store(self, ds: pydicom.Dataset) -> None:
        """One instance; returns when the peer accepted it."""

    def close(self) -> None:
        """Release what is held (associations, sessions)."""


def is_uid(value: str) -> bool:
    return bool(_UID.match(str(value))) and len(str(value)) <= 64


def query_studies(transport: Transport, query: StudyQuery) -> list[str]:
    """StudyInstanceUIDs matching the query, each checked to be a UID (they name folders)."""
    uids: list[str] = []
    for value in transport.query(query):
        if not is_uid(value):
            log.warning("ignoring a study with a malformed StudyInstanceUID")
        elif value not in uids:
            uids.append(value)
    return uids[:query.limit]


def retrieve_study(transport: Transport, study_uid: str, cache: Path) -> Path:
    """The study's instances as files under ``cache/<study_uid>`` (fetched once)."""
    folder = Path(cache) / study_uid
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    count = 0

    def save(ds: pydicom.Dataset) -> None:
        nonlocal count
        sop = str(ds.SOPInstanceUID)
        if not is_uid(sop):
            raise PacsError("retrieved an instance with a malformed SOPInstanceUID")
        if str(ds.StudyInstanceUID) != study_uid:
            raise PacsError("retrieved an instance of another study")
        with atomic_path(folder / f"{sop}.dcm", suffix=".dcm") as temp:
            ds.save_as(temp, enforce_file_format=True)
        count += 1

    transport.retrieve(study_uid, save)
    if not count:
        raise PacsError("the PACS returned no instance for the study")
    (folder / ".complete").write_text(f"{count} instances\n")
    return folder


def result_files(study_dir: Path) -> list[Path]:
    return sorted({p for pattern in RESULT_GLOBS for p in Path(study_dir).glob(pattern)})


def send_results(transport: Transport, files: Sequence[Path], sendlog: SendLog, config: PacsConfig,
                 sleep: Callable[[float], None] = time.sleep) -> SendSummary:
    """Store each file not yet sent; bounded retries with exponential backoff; all recorded."""
    summary = SendSummary()
    for path in files:
        try:
            ds = pydicom.dcmread(path)
            sop = str(ds.SOPInstanceUID)
        except Exception as exc:  # an unreadable result: counted as a failure, the others go on
            log.error("cannot read result %s: %s", path.name, type(exc).__name__)
            summary.failed += 1
            summary.errors.append(f"{path.name}: unreadable ({type(exc).__name__})")
            continue
        if sendlog.sent(sop):
            summary.already_sent += 1
            continue
        error = None
        for attempt in range(1, config.attempts + 1):
            try:
                transport.store(ds)
                error = None
                break
            except PacsError as exc:
                error = str(exc)
                log.warning("store %s: attempt %d/%d failed: %s", path.name, attempt, config.attempts, error)
                if attempt < config.attempts:
                    sleep(config.backoff_s * 2 ** (attempt - 1))
        sendlog.record(sop, str(path), "failed" if error else "sent", attempt, error)
        if error:
            summary.failed += 1
            summary.errors.append(f"{path.name}: {error}")
        else:
            summary.sent += 1
    return summary
