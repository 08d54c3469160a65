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
import html
import io
import json
import logging
from pathlib import Path
from typing import Iterator

from medseg.io.atomic import write_text_atomic

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
        write_index(studies, output)
    return studies


def status_counts(studies: list[dict]) -> dict[str, int]:
    return {status: sum(s["status"] == status for s in studies) for status in STUDY_STATUSES}


def write_summaries(studies: list[dict], output: Path, runs: list[str] = ()) -> None:
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
    write_text_atomic(output / "summary.json", json.dumps(summary, indent=2, default=str))


def write_index(studies: list[dict], output: Path) -> None:
    """A static page: one card per study (its study.json) with its QC pictures and figures."""
    cards = []
    for study in studies:
        sid = str(study.get("study_id", ""))
        items = []
        for row in study.get("series", []):
            text = html.escape(f"{row.get('series', '')} [{row.get('stage', '')}] {row.get('status', '')}")
            detail = ""
            if "final_angle_deg" in row:
                detail = (f"final {row['final_angle_deg']:+.1f}&deg; (box {row['box_angle_deg']:+.1f}&deg;, "
                          f"line {row['line_angle_deg']:+.1f}&deg;), CC {row['cc_area_mm2']:.0f} mm&sup2;"
                          + ("" if row.get("consistent", True) else " <b>check: box/line disagree</b>"))
            elif row.get("status") in ("failed", "skipped"):
                detail = html.escape(f"{row.get('error_type', '')} {row.get('message', '')}")
            image = (f'<img src="{html.escape(sid)}/{html.escape(row["qc"])}" loading="lazy">'
                     if row.get("qc") else "")
            items.append(f"<div class='item'><div>{text}</div><div class='detail'>{detail}</div>{image}</div>")
        status = html.escape(str(study.get("status", "")))
        cards.append(f"<section class='{status}'><h2>{html.escape(sid)} "
                     f"<span>{status}</span></h2>{''.join(items)}</section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>medseg run</title><style>
body{{font-family:sans-serif;background:#111;color:#ddd;margin:1em}} section{{border:1px solid #444;margin:1em 0;padding:.5em}}
section.failed{{border-color:#c44}} section.partial{{border-color:#c94}} h2 span{{font-size:.7em;color:#aaa}}
.item{{display:inline-block;vertical-align:top;margin:.5em;max-width:420px}}
.item img{{max-width:400px;display:block}} .detail{{font-size:.85em;color:#bbb}}</style></head><body>
<h1>medseg run: {len(studies)} studies</h1>{''.join(cards)}</body></html>"""
    write_text_atomic(output / "index.html", page)
