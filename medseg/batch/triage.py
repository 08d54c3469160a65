"""The run's ``index.html``: a triage table, one row per series, outliers first.

Each row carries its flags (why a reviewer should look): ``failed``, ``implausible`` (angle, CC
area or brain volume outside plausible ranges, or low CC confidence), ``inconsistent`` (box and
line disagree), ``cc-area-outlier`` (|z| of the CC area within the run above ``Z_OUTLIER``),
``warning``. The default order puts failed rows first, then implausible, inconsistent and outlier
rows, then the rest, by descending |z|. The table is embedded as JSON and sorted, filtered and
paged in the browser, so a run of thousands of studies stays one light page. Each positioned
series and composite links to its interactive ``view.html`` (:mod:`medseg.report.view`), which is
written here when missing.
"""

from __future__ import annotations

import html
import json
import logging
import math
from pathlib import Path, PurePosixPath

from medseg.io.atomic import write_text_atomic
from medseg.positioning.adult_range import ADULT_AREA_MM2

log = logging.getLogger(__name__)

Z_OUTLIER = 2.5
MIN_CONFIDENCE = 0.5
MAX_ABS_ANGLE_DEG = 45.0  # a subcallosal line steeper than this is not a head in a scanner
CC_AREA_MM2 = ADULT_AREA_MM2
BRAIN_ML = (700.0, 2500.0)  # whole brain, 3D volumes only (a localizer covers part of it)
RANK = {"failed": 0, "implausible": 1, "inconsistent": 1, "cc-area-outlier": 1, "warning": 2}
COLUMNS = ["study_id", "series", "stage", "status", "kind", "flags", "final_angle_deg", "box_line_deg",
           "cc_area_mm2", "cc_area_z", "confidence", "brain_volume_ml", "message"]


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) else None


def triage_rows(studies: list[dict]) -> list[dict]:
    """Flatten every study.json into rows with flags and the CC-area z-score, in triage order."""
    rows = []
    for study in studies:
        series = study.get("series") or [{"series": "", "stage": "study", "status": study.get("status", "")}]
        for entry in series:
            box, line = _number(entry.get("box_angle_deg")), _number(entry.get("line_angle_deg"))
            rows.append({
                "study_id": str(study.get("study_id", "")), "study_status": study.get("status", ""),
                "series": str(entry.get("series", "")), "stage": entry.get("stage", ""),
                "status": entry.get("status", ""), "kind": entry.get("kind", ""),
                "final_angle_deg": _number(entry.get("final_angle_deg")),
                "box_line_deg": abs(box - line) if box is not None and line is not None else None,
                "consistent": entry.get("consistent"),
                "cc_area_mm2": _number(entry.get("cc_area_mm2")),
                "confidence": _number(entry.get("confidence")),
                "brain_volume_ml": _number(entry.get("brain_volume_ml")),
                "message": " ".join(str(entry.get(k, "")) for k in ("error_type", "message", "warning")
                                    if entry.get(k)).strip(),
                "_entry": entry,
            })
    areas = [r["cc_area_mm2"] for r in rows if r["status"] == "ok" and r["cc_area_mm2"] is not None]
    mean = sum(areas) / len(areas) if areas else 0.0
    std = math.sqrt(sum((a - mean) ** 2 for a in areas) / (len(areas) - 1)) if len(areas) >= 3 else 0.0
    for row in rows:
        area = row["cc_area_mm2"]
        row["cc_area_z"] = (area - mean) / std if std > 0 and area is not None and row["status"] == "ok" else None
        row["flags"] = _flags(row)
        row["rank"] = min([RANK[f] for f in row["flags"]] or [4 if row["status"] == "skipped" else 3])
    rows.sort(key=lambda r: (r["rank"], -abs(r["cc_area_z"] or 0.0), r["study_id"], r["series"]))
    return rows


def _flags(row: dict) -> list[str]:
    flags = []
    if row["status"] == "failed":
        flags.append("failed")
    angle, area, confidence, brain = (row[k] for k in ("final_angle_deg", "cc_area_mm2", "confidence",
                                                       "brain_volume_ml"))
    if row["status"] == "ok" and row["stage"] == "position" and (
            (angle is not None and abs(angle) > MAX_ABS_ANGLE_DEG)
            or (area is not None and not CC_AREA_MM2[0] <= area <= CC_AREA_MM2[1])
            or (confidence is not None and confidence < MIN_CONFIDENCE)
            or (brain is not None and row["kind"] == "volume" and not BRAIN_ML[0] <= brain <= BRAIN_ML[1])):
        flags.append("implausible")
    if row["consistent"] is False:
        flags.append("inconsistent")
    if row["cc_area_z"] is not None and abs(row["cc_area_z"]) > Z_OUTLIER:
        flags.append("cc-area-outlier")
    if row["message"] and row["status"] == "ok":
        flags.append("warning")
    return flags


def _links(row: dict, output: Path, niivue_js: Path | None) -> tuple[Path | None, dict]:
    """(the bundle, once written), and the row's links (view, qc, result) relative to ``output``."""
    entry = row["_entry"]
    links: dict[str, str] = {}
    if not row["study_id"] or row["study_id"].startswith(".") or "/" in row["study_id"] or "\\" in row["study_id"]:
        return niivue_js, links  # not a study folder name medseg writes: link nothing
    study = PurePosixPath(row["study_id"])
    for key in ("qc", "result"):
        if entry.get(key):
            links[key] = str(study / entry[key])
    if row["status"] == "ok" and entry.get("result") and row["stage"] in ("position", "stitch"):
        folder = output / row["study_id"] / PurePosixPath(entry["result"]).parent
        view = folder / "view.html"
        if not view.exists():
            from medseg.report.view import write_composite_view, write_niivue, write_position_view

            try:
                niivue_js = niivue_js or write_niivue(output)
                (write_position_view if row["stage"] == "position" else write_composite_view)(folder, niivue_js)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("no review page for %s/%s: %s", row["study_id"], row["series"], exc)
        if view.exists():
            links["view"] = str(study / PurePosixPath(entry["result"]).parent / "view.html")
    return niivue_js, links


def write_index(studies: list[dict], output: Path) -> Path:
    """Write ``output/index.html`` (the triage table) from the contents of every study.json, and
    each missing ``view.html``; returns the index path."""
    output = Path(output)
    rows, niivue_js = [], None
    for row in triage_rows(studies):
        niivue_js, links = _links(row, output, niivue_js)
        row.pop("_entry")
        row["links"] = links
        rows.append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    counts = {s: sum(1 for st in studies if st.get("status") == s) for s in ("ok", "partial", "failed", "skipped")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    data = json.dumps({"rows": rows, "columns": COLUMNS}, separators=(",", ":")).replace("</", "<\\/")
    page = _PAGE.replace("@SUMMARY@", html.escape(f"{len(studies)} studies ({summary}), {len(rows)} series")) \
        .replace("@DATA@", data)
    return write_text_atomic(output / "index.html", page)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>medseg run</title><style>
body{font-family:sans-serif;background:#111;color:#ddd;margin:1em;font-size:14px}
table{border-collapse:collapse;width:100%}th,td{padding:3px 6px;border-bottom:1px solid #333;text-align:left}
th{cursor:pointer;color:#aaa;white-space:nowrap}th.sorted{color:#fff}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#3a1515}tr.flagged td{background:#33290f}a{color:#8cf}
.flag{display:inline-block;border-radius:3px;padding:0 4px;margin:1px;font-size:.8em;background:#654;color:#fd8}
.flag.failed{background:#822;color:#fcc}#controls{margin:.6em 0}#controls>*{margin-right:1em}
td:first-child{max-width:14em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.msg{color:#aaa;font-size:.85em;max-width:30em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}</style></head>
<body><h1>medseg run</h1><div>@SUMMARY@</div>
<div id="controls"><label>status <select id="status"><option value="">all</option><option>ok</option>
<option>failed</option><option>skipped</option></select></label>
<label><input type="checkbox" id="flagged"> flagged only</label>
<label>search <input id="search" size="24"></label>
<label>rows per page <select id="size"><option>50</option><option selected>100</option><option>500</option></select></label>
<span id="pager"><button id="prev">&lt;</button> <span id="pageinfo"></span> <button id="next">&gt;</button></span></div>
<table><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table>
<script id="medseg-triage" type="application/json">@DATA@</script>
<script>
(() => {
  const data = JSON.parse(document.getElementById("medseg-triage").textContent);
  const labels = {study_id: "study", series: "series", stage: "stage", status: "status", kind: "kind",
    flags: "flags", final_angle_deg: "angle (°)", box_line_deg: "|box−line| (°)", cc_area_mm2: "CC area (mm²)",
    cc_area_z: "CC area z", confidence: "confidence", brain_volume_ml: "brain (ml)", message: "message"};
  const numeric = new Set(["final_angle_deg", "box_line_deg", "cc_area_mm2", "cc_area_z", "confidence", "brain_volume_ml"]);
  const query = new URLSearchParams(location.search);
  let sortKey = query.get("sort") || "triage", descending = query.get("order") === "desc", page = 0;
  const el = (id) => document.getElementById(id);
  if (query.get("status")) el("status").value = query.get("status");
  if (query.get("flagged")) el("flagged").checked = true;
  const head = el("head");
  for (const key of data.columns) {
    const th = document.createElement("th");
    th.textContent = labels[key] || key; th.dataset.key = key;
    th.onclick = () => { descending = sortKey === key ? !descending : numeric.has(key) && key !== "confidence";
                         sortKey = key; page = 0; render(); };
    head.appendChild(th);
  }
  const value = (row, key) => key === "flags" ? row.flags.length : key === "cc_area_z" && row[key] !== null
    ? Math.abs(row[key]) : row[key];
  function compare(a, b) {
    if (sortKey === "triage") return a.rank - b.rank || Math.abs(b.cc_area_z || 0) - Math.abs(a.cc_area_z || 0);
    const x = value(a, sortKey), y = value(b, sortKey);
    if (x === null || x === undefined || x === "") return 1;   // missing values last, either order
    if (y === null || y === undefined || y === "") return -1;
    const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -c : c;
  }
  function cell(row, key) {
    const td = document.createElement("td");
    const v = row[key];
    if (key === "flags") {
      for (const f of v) { const s = document.createElement("span"); s.className = "flag " + f; s.textContent = f; td.appendChild(s); }
    } else if (key === "series" && row.links.view) {
      const a = document.createElement("a"); a.href = row.links.view; a.textContent = v; td.appendChild(a);
    } else if (key === "series" && row.links.qc) {
      const a = document.createElement("a"); a.href = row.links.qc; a.textContent = v; td.appendChild(a);
    } else if (numeric.has(key)) {
      td.className = "num"; td.textContent = v === null || v === undefined ? "" :
        (key === "cc_area_z" || key === "confidence" || key === "box_line_deg") ? v.toFixed(2) : v.toFixed(1);
    } else { td.textContent = v === null || v === undefined ? "" : String(v); if (key === "message") { td.className = "msg"; td.title = v; } }
    return td;
  }
  function render() {
    const status = el("status").value, flagged = el("flagged").checked, search = el("search").value.toLowerCase();
    const rows = data.rows.filter((r) => (!status || r.status === status) && (!flagged || r.flags.length) &&
      (!search || (r.study_id + " " + r.series + " " + r.message).toLowerCase().includes(search)));
    rows.sort(compare);
    const size = Number(el("size").value), pages = Math.max(1, Math.ceil(rows.length / size));
    page = Math.min(page, pages - 1);
    const body = el("rows"); body.textContent = "";
    for (const row of rows.slice(page * size, (page + 1) * size)) {
      const tr = document.createElement("tr");
      tr.className = row.status === "failed" ? "failed" : row.flags.length ? "flagged" : "";
      tr.dataset.study = row.study_id; tr.dataset.series = row.series;
      for (const key of data.columns) tr.appendChild(cell(row, key));
      tr.firstChild.title = row.study_id;
      body.appendChild(tr);
    }
    el("pageinfo").textContent = `page ${page + 1} of ${pages} (${rows.length} rows)`;
    for (const th of head.children) th.className = th.dataset.key === sortKey ? "sorted" : "";
    document.body.dataset.ready = "1";
  }
  for (const id of ["status", "flagged", "search", "size"]) el(id).oninput = () => { page = 0; render(); };
  el("prev").onclick = () => { page = Math.max(0, page - 1); render(); };
  el("next").onclick = () => { page += 1; render(); };
  render();
})();
</script></body></html>
"""
