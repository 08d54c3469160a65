"""``medseg pacs``: query a DICOMweb PACS, retrieve the studies, run the batch, store the results.

Stages (plain functions):
1. :func:`query_studies`: QIDO-RS study search (by StudyDate, ModalitiesInStudy, StudyInstanceUID);
2. :func:`retrieve_study`: WADO-RS into ``OUT/cache/<study uid>/`` (one file per instance, a
   ``.complete`` marker when the whole study is there: a rerun does not fetch it again);
3. :func:`medseg.batch.run.run` on the cached studies with ``resume`` on, into ``OUT/results``
   (a rerun keeps the results, and so their UIDs);
4. :func:`send_results`: STOW-RS of every DICOM result of the study (``*/dicom/*.dcm`` and the
   spine composite series), one instance per request, with bounded retries and exponential backoff,
   recorded in ``OUT/send/<study uid>.json``; instances recorded as sent are not sent again.

The DICOMweb protocol is spoken by ``dicomweb-client``; its own retry is turned off so that every
attempt is counted here.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pydicom
import requests

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


def make_client(url: str, config: PacsConfig):
    from dicomweb_client import DICOMwebClient

    session = requests.Session()
    if config.auth:
        session.auth = config.auth
    client = DICOMwebClient(url, session=session, timeout=config.timeout_s)
    client.set_http_retry_params(retry=False)  # attempts are counted (and logged) by send_results
    return client


def query_studies(client, query: StudyQuery) -> list[str]:
    """StudyInstanceUIDs matching the query (each checked to be a UID: they name folders)."""
    filters = {}
    if query.date:
        filters["StudyDate"] = query.date
    if query.modality:
        filters["ModalitiesInStudy"] = query.modality
    uids: list[str] = []
    for uid in query.study_uids or [None]:
        search = dict(filters, **({"StudyInstanceUID": uid} if uid else {}))
        try:
            found = client.search_for_studies(search_filters=search, limit=query.limit)
        except requests.RequestException as exc:
            raise PacsError(f"study query failed: {_describe(exc)}") from exc
        for item in found:
            value = item.get("0020000D", {}).get("Value", [""])[0]
            if not _UID.match(str(value)) or len(value) > 64:
                log.warning("ignoring a study with a malformed StudyInstanceUID")
                continue
            if value not in uids:
                uids.append(value)
    return uids


def retrieve_study(client, study_uid: str, cache: Path) -> Path:
    """The study's instances as files under ``cache/<study_uid>`` (fetched once)."""
    folder = Path(cache) / study_uid
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        datasets = client.retrieve_study(study_uid)
    except requests.RequestException as exc:
        raise PacsError(f"retrieving study failed: {_describe(exc)}") from exc
    for ds in datasets:
        sop = str(ds.SOPInstanceUID)
        if not _UID.match(sop):
            raise PacsError("retrieved an instance with a malformed SOPInstanceUID")
        with atomic_path(folder / f"{sop}.dcm", suffix=".dcm") as temp:
            ds.save_as(temp, enforce_file_format=True)
    (folder / ".complete").write_text(f"{len(datasets)} instances\n")
    return folder


def result_files(study_dir: Path) -> list[Path]:
    return sorted({p for pattern in RESULT_GLOBS for p in Path(study_dir).glob(pattern)})


def send_results(client, files: Sequence[Path], sendlog: SendLog, config: PacsConfig,
                 sleep: Callable[[float], None] = time.sleep) -> SendSummary:
    """STOW-RS each file not yet sent; bounded retries with exponential backoff; all recorded."""
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
                response = client.store_instances([ds], study_instance_uid=str(ds.StudyInstanceUID))
                failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
                if failed:
                    reason = failed[0].get("FailureReason", "?")
                    raise PacsError(f"the PACS refused the instance (failure reason {reason})")
                error = None
                break
            except (requests.RequestException, PacsError) as exc:
                error = _describe(exc)
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


def _describe(exc: Exception) -> str:
    """An error message without URLs' credentials or response bodies (which may hold patient data)."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
