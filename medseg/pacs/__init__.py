"""The PACS loop: query, retrieve, run the batch, store the DICOM results back (DICOMweb or DIMSE)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from medseg.pacs.config import DimseConfig, PacsConfig, PacsError, load_config
from medseg.pacs.loop import StudyQuery, Transport, query_studies, result_files, retrieve_study, send_results
from medseg.pacs.sendlog import SendLog

__all__ = ["DimseConfig", "PacsConfig", "PacsError", "StudyQuery", "load_config", "open_transports", "run_pacs"]

log = logging.getLogger(__name__)


def open_transports(config: PacsConfig) -> tuple[Transport, Transport]:
    """(where studies come from, where results go): DICOMweb or DIMSE, as configured."""
    if config.dimse:
        from medseg.pacs.dimse import DimseTransport

        transport = DimseTransport(config)
        return transport, transport
    from medseg.pacs.dicomweb import DicomWebTransport

    source = DicomWebTransport(config.url, config)
    return source, (source if config.stow_url == config.url else DicomWebTransport(config.stow_url, config))


def run_pacs(config: PacsConfig, query: StudyQuery, output: Path, options=None, *, sleep=None
             ) -> tuple[int, dict]:
    """Query -> retrieve into ``output/cache`` -> batch into ``output/results`` -> store back.

    Returns (exit status, report): 0 everything processed and stored, 1 some study, series or
    store failed (each recorded), 2 no study matched. Local outputs are kept whatever the PACS does.
    """
    import dataclasses

    from medseg.batch.run import RunOptions

    output = Path(output)
    options = dataclasses.replace(options or RunOptions(), resume=True, dicom_out=True)
    source, store = open_transports(config)
    try:
        return _loop(source, store, config, query, output, options, sleep)
    finally:
        for transport in {id(source): source, id(store): store}.values():
            transport.close()


def _loop(source: Transport, store: Transport, config: PacsConfig, query: StudyQuery, output: Path,
          options, sleep) -> tuple[int, dict]:
    import time

    from medseg.batch.run import run
    from medseg.io.atomic import write_json_atomic

    uids = query_studies(source, query)
    log.info("%d studies matched", len(uids))
    report: dict = {"schema": "medseg.pacs/1", "url": config.source_name,
                    "store_url": config.store_name, "studies": {}}
    if not uids:
        return 2, report
    folders, failed = [], False
    for uid in uids:
        try:
            folders.append(retrieve_study(source, uid, output / "cache"))
        except PacsError as exc:
            log.error("study %s: %s", uid, exc)
            report["studies"][uid] = {"retrieve": "failed", "error": str(exc)}
            failed = True
    status, run_report = run(folders, output / "results", options) if folders else (1, {})
    failed = failed or status != 0
    for folder in folders:
        uid = folder.name
        sid_dir = output / "results" / uid
        log_path = output / "send" / f"{uid}.json"
        sendlog = SendLog.load(log_path, uid, config.store_name)
        files = result_files(sid_dir) if sid_dir.is_dir() else []
        summary = send_results(store, files, sendlog, config, **({"sleep": sleep} if sleep else {}))
        store.close()  # one association (DIMSE) per study send
        failed = failed or summary.failed > 0
        record = json.loads((sid_dir / "study.json").read_text()) if (sid_dir / "study.json").exists() else {}
        study = record.get("status", "missing")
        unwritten = [s["series"] for s in record.get("series", []) if s.get("dicom_status") in ("failed", "partial")]
        failed = failed or bool(unwritten)
        report["studies"][uid] = {"retrieve": "ok", "batch": study, "results": len(files), "sent": summary.sent,
                                  "dicom_failed_series": unwritten,
                                  "already_sent": summary.already_sent, "send_failed": summary.failed,
                                  "send_log": str(log_path.relative_to(output))}
        log.info("study %s: %s, %d sent, %d already sent, %d failed", uid, study, summary.sent,
                 summary.already_sent, summary.failed)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(output / "pacs.json", report)
    return (1 if failed else 0), report
