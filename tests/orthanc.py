"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the tests, on loopback.

Its own JSON config: storage in a temporary folder, free non-default HTTP port, remote access off,
HTTP basic authentication on, the DICOMweb plugin loaded. The DICOM server is off unless the test
registers DICOM modalities: then it listens on a free port (Orthanc 1.10 binds it on every
interface; only the registered AE titles, from their registered hosts, may use it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from medseg.localhost import free_port, stop_process

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "medseg", "test-only-password"
AET = "ORTHANC"


@dataclass
class Orthanc:
    url: str  # REST root
    process: subprocess.Popen
    auth: tuple[str, str] = (USER, PASSWORD)
    dicom_port: int = 0  # 0: DICOM server off
    aet: str = AET

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, files) -> None:
        for path in files:
            response = requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30)
            response.raise_for_status()

    def series_of(self, study_uid: str) -> list[dict]:
        found = requests.post(f"{self.url}/tools/find", auth=self.auth, timeout=30, json={
            "Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}).json()
        return found

    def instance_count(self) -> int:
        return int(requests.get(f"{self.url}/statistics", auth=self.auth, timeout=30).json()["CountInstances"])


def available() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else the reason to skip."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does it)"
    if not DICOMWEB_PLUGIN.exists():
        return f"the Orthanc DICOMweb plugin is not installed ({DICOMWEB_PLUGIN})"
    return None


def start(folder: Path, timeout_s: float = 30.0, modalities: dict[str, int] | None = None) -> Orthanc:
    """``modalities``: AE title -> port of DICOM peers on 127.0.0.1 allowed to use Orthanc's DICOM
    server (C-ECHO, C-FIND, C-GET, C-MOVE to them, C-STORE); none: the DICOM server is off."""
    folder.mkdir(parents=True, exist_ok=True)
    port, dicom_port = free_port(), free_port()
    config = {
        "Name": "medseg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": port, "HttpServerEnabled": True, "RemoteAccessAllowed": False,
        "DicomServerEnabled": bool(modalities), "DicomPort": dicom_port, "DicomAet": AET,
        "DicomCheckCalledAet": True, "DicomCheckModalityHost": True, "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": False, "DicomScuTimeout": 10, "DicomScpTimeout": 10,
        "DicomModalities": {ae.lower(): [ae, "127.0.0.1", p] for ae, p in (modalities or {}).items()},
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False, "ConcurrentJobs": 1, "HttpThreadsCount": 4,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(f"http://127.0.0.1:{port}", process, dicom_port=dicom_port if modalities else 0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited ({process.returncode}): {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{server.dicomweb}/studies", auth=server.auth, timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stop(server)
    raise RuntimeError("Orthanc did not answer in time")


def stop(server: Orthanc) -> None:
    stop_process(server.process, 15)
