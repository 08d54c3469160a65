"""Run-level outputs: summary.csv, summary.json, run.json, and index.html with every QC picture."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from medseg.io.atomic import write_text_atomic

COLUMNS = ["study_id", "study_status", "series", "stage", "status", "kind", "final_angle_deg",
           "box_angle_deg", "line_angle_deg", "consistent", "cc_area_mm2", "error_type", "message", "qc"]


def write_summaries(records, output: Path, report: dict) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        rows = record.series or [{}]
        for row in rows:
            qc = row.get("qc")
            writer.writerow({**row, "study_id": record.study_id, "study_status": record.status,
                             "qc": f"{record.study_id}/{qc}" if qc else ""})
    write_text_atomic(output / "summary.csv", buffer.getvalue())
    summary = {"report": report,
               "studies": [{"study_id": r.study_id, "status": r.status, "series": r.series,
                            "seconds": r.seconds} for r in records]}
    write_text_atomic(output / "summary.json", json.dumps(summary, indent=2, default=str))


def write_index(records, output: Path) -> None:
    """A static page: one card per study with its QC pictures and figures."""
    cards = []
    for record in records:
        items = []
        for row in record.series:
            text = html.escape(f"{row.get('series', '')} [{row.get('stage', '')}] {row.get('status', '')}")
            detail = ""
            if "final_angle_deg" in row:
                detail = (f"final {row['final_angle_deg']:+.1f}&deg; (box {row['box_angle_deg']:+.1f}&deg;, "
                          f"line {row['line_angle_deg']:+.1f}&deg;), CC {row['cc_area_mm2']:.0f} mm&sup2;"
                          + ("" if row.get("consistent", True) else " <b>check: box/line disagree</b>"))
            elif row.get("status") in ("failed", "skipped"):
                detail = html.escape(f"{row.get('error_type', '')} {row.get('message', '')}")
            image = (f'<img src="{html.escape(record.study_id)}/{html.escape(row["qc"])}" loading="lazy">'
                     if row.get("qc") else "")
            items.append(f"<div class='item'><div>{text}</div><div class='detail'>{detail}</div>{image}</div>")
        status = html.escape(record.status)
        cards.append(f"<section class='{status.split()[0]}'><h2>{html.escape(record.study_id)} "
                     f"<span>{status}</span></h2>{''.join(items)}</section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>medseg run</title><style>
body{{font-family:sans-serif;background:#111;color:#ddd;margin:1em}} section{{border:1px solid #444;margin:1em 0;padding:.5em}}
section.failed{{border-color:#c44}} h2 span{{font-size:.7em;color:#aaa}} .item{{display:inline-block;vertical-align:top;margin:.5em;max-width:420px}}
.item img{{max-width:400px;display:block}} .detail{{font-size:.85em;color:#bbb}}</style></head><body>
<h1>medseg run: {len(records)} studies</h1>{''.join(cards)}</body></html>"""
    write_text_atomic(output / "index.html", page)
