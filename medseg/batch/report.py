"""Run-level outputs, rebuilt from every ``study.json`` in an output folder.

``summary.csv``, ``summary.json`` and ``index.html`` are derived from the study folders alone (a
merge on read), so studies finished by earlier, resumed or concurrent (``--shard``) invocations all
appear and no invocation can drop another's rows. Each invocation's own report (options, models,
timings, damaged files) is a separate file ``runs/run-<shard>-<time>-<pid>.json``. A rebuild holds
a lock on ``.medseg-report.lock`` so that the last rebuild reads every study finished before it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from pathlib import Path
from typing import Iterator, Sequence

from medseg.io.atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

COLUMNS = ["study_id", "study_status", "series", "stage", "status", "kind", "final_angle_deg",
           "box_angle_deg", "line_angle_deg", "consistent", "cc_area_mm2", "error_type", "message", "qc"]
STUDY_STATUSES = ("ok", "partial", "failed", "skipped")
LOCK_NAME = ".medseg-report.lock"


def read_study(path: Path) -> dict | None:
    """A study.json as a dict, or None when it is missing, empty, truncated or not medseg's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("status") not in STUDY_STATUSES \
            or not isinstance(data.get("series"), list) or not isinstance(data.get("study_id"), str):
        return None
    return data


def collect_studies(output: Path) -> list[dict]:
    """Every valid ``OUT/<id>/study.json`` (unfinished ``.partial-*`` folders left out), by id."""
    studies = []
    for path in sorted(Path(output).glob("*/study.json")):
        if path.parent.name.startswith("."):
            continue
        data = read_study(path)
        if data is None:
            log.warning("%s: empty or invalid, left out of the summaries (a resumed run redoes it)", path)
            continue
        studies.append(data)
    return studies


def collect_runs(output: Path) -> list[str]:
    return sorted(str(p.relative_to(output)) for p in (Path(output) / "runs").glob("run-*.json"))


@contextlib.contextmanager
def _locked(output: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic writes alone (last writer wins)
        yield
        return
    with open(Path(output) / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rebuild(output: Path) -> list[dict]:
    """Rewrite summary.csv, summary.json and index.html from every study.json under ``output``."""
    output = Path(output)
    with _locked(output):
        studies = collect_studies(output)
        write_summaries(studies, output, collect_runs(output))
        from medseg.batch.triage import write_index  # the triage page and the review views

        write_index(studies, output)
    return studies


def status_counts(studies: list[dict]) -> dict[str, int]:
    return {status: sum(s["status"] == status for s in studies) for status in STUDY_STATUSES}


def write_summaries(studies: list[dict], output: Path, runs: Sequence[str] = ()) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for study in studies:
        for row in study["series"] or [{}]:
            qc = row.get("qc")
            writer.writerow({**row, "study_id": study["study_id"], "study_status": study["status"],
                             "qc": f"{study['study_id']}/{qc}" if qc else ""})
    write_text_atomic(output / "summary.csv", buffer.getvalue())
    summary = {"schema": "medseg.summary/1", "counts": status_counts(studies), "runs": list(runs),
               "studies": studies}
    write_json_atomic(output / "summary.json", summary, default=str)
