"""The per-study send log: which result instances reached the PACS (JSON, written atomically).

A rerun reads it and sends only instances not yet recorded as sent, so results are never stored
twice to the same store; failures are recorded with their attempts and last error. Each entry
names its store (a URL, or ``dimse://AE@HOST:PORT``).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from medseg.io.atomic import write_text_atomic

SCHEMA = "medseg.pacs-send/1"


@dataclass
class SendLog:
    path: Path
    study_uid: str
    store_url: str
    instances: dict[str, dict] = field(default_factory=dict)  # SOPInstanceUID -> entry

    @classmethod
    def load(cls, path: Path, study_uid: str, store_url: str) -> "SendLog":
        path = Path(path)
        if path.exists():
            data = json.loads(path.read_text())
            return cls(path, study_uid, store_url, dict(data.get("instances", {})))
        return cls(path, study_uid, store_url)

    def sent(self, sop_uid: str) -> bool:
        """Recorded as sent to this log's store (a result sent elsewhere is sent again here)."""
        entry = self.instances.get(sop_uid, {})
        return entry.get("status") == "sent" and entry.get("store", self.store_url) == self.store_url

    def record(self, sop_uid: str, file: str, status: str, attempts: int, error: str | None = None) -> None:
        previous = self.instances.get(sop_uid, {})
        self.instances[sop_uid] = {
            "file": file, "status": status, "store": self.store_url,
            "attempts": previous.get("attempts", 0) + attempts,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **({"error": error} if error else {})}
        self.save()

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(
            {"schema": SCHEMA, "study_uid": self.study_uid, "store_url": self.store_url,
             "instances": self.instances}, indent=2))
