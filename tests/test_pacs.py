"""`medseg pacs` against a real Orthanc: query, retrieve, run, store back; idempotent rerun; a
PACS that refuses stores gets bounded retries and a recorded failure, nothing lost locally."""

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import highdicom as hd
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient

from medseg.cli import main
from medseg.dicomout.sr import read_angles
from medseg.pacs import PacsConfig, PacsError, StudyQuery, load_config, run_pacs
from tests import orthanc as orthanc_server
from tests.conftest import REPO
from tests.dicom_results_helpers import localizer_study


def test_credentials_never_in_urls_and_unknown_settings_refused(tmp_path, monkeypatch):
    with pytest.raises(PacsError, match="must not contain credentials"):
        PacsConfig(url="http://user:secret@127.0.0.1:1/dicom-web")
    (tmp_path / "pacs.yaml").write_text("url: http://127.0.0.1:1/dicom-web\npasword: typo\n")
    with pytest.raises(PacsError, match="unknown settings"):
        load_config(tmp_path / "pacs.yaml")
    (tmp_path / "pacs.yaml").write_text("url: http://127.0.0.1:1/dicom-web\nusername: a\npassword: from-file\n")
    monkeypatch.setenv("MEDSEG_PACS_PASSWORD", "from-env")
    config = load_config(tmp_path / "pacs.yaml", attempts=2)
    assert config.auth == ("a", "from-env") and config.attempts == 2 and "from-env" not in repr(config)


class _Refusing(BaseHTTPRequestHandler):
    """A STOW-RS endpoint that refuses every store (503)."""

    posts = 0

    def do_POST(self):  # noqa: N802
        type(self).posts += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def orthanc(tmp_path):
    reason = orthanc_server.available()
    if reason:
        pytest.skip(reason)
    server = orthanc_server.start(tmp_path / "orthanc")
    yield server
    orthanc_server.stop(server)


@pytest.fixture
def refusing():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(), reason="no shipped CC model")
def test_pacs_loop_with_a_real_orthanc(tmp_path, orthanc, refusing, monkeypatch, capsys, caplog):
    uid = localizer_study(tmp_path / "in")
    orthanc.upload(sorted((tmp_path / "in" / "loc").iterdir()))
    monkeypatch.setenv("MEDSEG_PACS_USERNAME", orthanc_server.USER)
    monkeypatch.setenv("MEDSEG_PACS_PASSWORD", orthanc_server.PASSWORD)
    out = tmp_path / "out"

    # 1. a PACS that refuses every store: bounded retries with backoff, failures recorded, outputs kept
    waits = []
    config = load_config(None, url=orthanc.dicomweb, store_url=refusing, attempts=3, backoff_s=0.5)
    status, report = run_pacs(config, StudyQuery(study_uids=(uid,)), out, sleep=waits.append)
    assert status == 1
    study = report["studies"][uid]
    assert study["batch"] == "ok" and study["results"] == 3 and study["sent"] == 0 and study["send_failed"] == 3
    assert _Refusing.posts == 9 and waits == [0.5, 1.0] * 3
    log = json.loads((out / "send" / f"{uid}.json").read_text())
    assert all(e["status"] == "failed" and e["attempts"] == 3 and "503" in e["error"]
               for e in log["instances"].values())
    local = sorted(p.name for p in (out / "results" / uid).rglob("*.dcm"))
    assert local == ["sc.dcm", "seg.dcm", "sr.dcm"]
    before = orthanc.instance_count()

    # 2. the real PACS, through the command line (date and modality filters too)
    assert main(["pacs", "--url", orthanc.dicomweb, "--date", "20240101-20240131", "--modality", "MR",
                 "-o", str(out), "-q"]) == 0
    assert orthanc.instance_count() == before + 3
    _check_results_in_orthanc(orthanc, uid, out)

    # 3. a rerun sends nothing new
    assert main(["pacs", "--url", orthanc.dicomweb, "--study-uid", uid, "-o", str(out), "-q"]) == 0
    assert orthanc.instance_count() == before + 3
    report = json.loads((out / "pacs.json").read_text())
    assert report["studies"][uid]["sent"] == 0 and report["studies"][uid]["already_sent"] == 3
    log = json.loads((out / "send" / f"{uid}.json").read_text())
    assert all(e["status"] == "sent" for e in log["instances"].values())

    # credentials reach no output and no log line
    texts = [p.read_text(errors="ignore") for p in out.rglob("*.json")] + [capsys.readouterr().err, caplog.text]
    assert not any(orthanc_server.PASSWORD in t for t in texts)


def _check_results_in_orthanc(orthanc, uid, out):
    """SEG, SR and SC are in the source study in Orthanc and parse back; the SR's angles are result.json's."""
    series = orthanc.series_of(uid)
    modalities = sorted(s["MainDicomTags"].get("Modality") for s in series)
    assert modalities == ["MR", "OT", "SEG", "SR"]
    session = requests.Session()
    session.auth = orthanc.auth
    client = DICOMwebClient(orthanc.dicomweb, session=session)
    stored = {ds.Modality: ds for ds in client.retrieve_study(uid)}
    assert all(stored[m].StudyInstanceUID == uid for m in ("SEG", "SR", "OT"))
    seg = hd.seg.Segmentation.from_dataset(stored["SEG"])
    assert seg.number_of_segments == 2
    entry = json.loads((out / "results" / uid / "study.json").read_text())["series"][0]
    result = json.loads((out / "results" / uid / entry["result"]).read_text())
    buffer = io.BytesIO()
    stored["SR"].save_as(buffer)
    buffer.seek(0)
    angles = read_angles(hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(buffer)))
    assert angles["final"] == result["angles"]["final"]["angle_deg"]
    assert angles["box"] == result["angles"]["box"]["angle_deg"]
    assert angles["pitch_deg"] == result["axial_plan"]["pitch_deg"]


# ---- the DIMSE transport (C-FIND, C-GET / C-MOVE, C-STORE) against the same Orthanc ----

def test_dimse_settings_are_checked():
    with pytest.raises(PacsError, match="AE_TITLE@HOST:PORT"):
        load_config(None, dimse={"peer": "ORTHANC-127.0.0.1"})
    with pytest.raises(PacsError, match="move_port"):
        load_config(None, dimse={"peer": "ORTHANC@127.0.0.1:4242", "retrieve": "move"})
    with pytest.raises(PacsError, match="not both"):
        load_config(None, dimse={"peer": "ORTHANC@127.0.0.1:4242"}, url="http://127.0.0.1:1/dicom-web")
    with pytest.raises(PacsError, match="unknown settings"):
        load_config(None, dimse={"peer": "ORTHANC@127.0.0.1:4242", "calling_aet": "X"})
    with pytest.raises(PacsError, match="bad AE title"):
        load_config(None, dimse={"peer": "ORTHANC@127.0.0.1:4242", "calling_ae": "A" * 17})


@pytest.fixture
def orthanc_dicom(tmp_path):
    """Orthanc with its DICOM server on, knowing MEDSEG (us; C-MOVE destination port) and REFUSE."""
    reason = orthanc_server.available()
    if reason:
        pytest.skip(reason)
    ports = {"MEDSEG": orthanc_server.free_port(), "REFUSE": orthanc_server.free_port()}
    server = orthanc_server.start(tmp_path / "orthanc", modalities=ports)
    server.peer_ports = ports
    yield server
    orthanc_server.stop(server)


@pytest.fixture
def refusing_scp(orthanc_dicom):
    """A pynetdicom Storage SCP (AE REFUSE) that answers every C-STORE with 0xA700."""
    from pynetdicom import AE, evt

    from medseg.pacs.dimse import STORAGE_CLASSES

    received = []

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        return 0xA700

    ae = AE(ae_title="REFUSE")
    for uid in STORAGE_CLASSES:
        ae.add_supported_context(uid)
    port = orthanc_dicom.peer_ports["REFUSE"]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield f"REFUSE@127.0.0.1:{port}", received
    server.shutdown()


@pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(), reason="no shipped CC model")
def test_dimse_loop_with_a_real_orthanc(tmp_path, orthanc_dicom, refusing_scp, caplog):
    import logging

    from medseg.pacs.dimse import DimseTransport
    from medseg.pacs.loop import retrieve_study

    caplog.set_level(logging.DEBUG)

    orthanc = orthanc_dicom
    uid = localizer_study(tmp_path / "in")
    uploaded = sorted((tmp_path / "in" / "loc").iterdir())
    orthanc.upload(uploaded)
    peer = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    out = tmp_path / "out"

    # C-MOVE to our own temporary Storage SCP: the same cache layout as C-GET / WADO-RS
    move = load_config(None, dimse={"peer": peer, "retrieve": "move", "move_port": orthanc.peer_ports["MEDSEG"],
                                    "move_bind": "127.0.0.1"}, timeout_s=10)
    moved = retrieve_study(DimseTransport(move), uid, tmp_path / "moved")
    sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in uploaded}
    assert {p.stem for p in moved.glob("*.dcm")} == sops and (moved / ".complete").exists()

    # 1. C-FIND + C-GET from Orthanc, results C-STOREd to a peer refusing with 0xA700: retried, recorded
    store_to, received = refusing_scp
    waits = []
    config = load_config(None, dimse={"peer": peer, "store": store_to}, attempts=2, backoff_s=0.5, timeout_s=10)
    status, report = run_pacs(config, StudyQuery(study_uids=(uid,)), out, sleep=waits.append)
    study = report["studies"][uid]
    assert status == 1 and study["batch"] == "ok" and study["results"] == 3
    assert study["sent"] == 0 and study["send_failed"] == 3 and len(received) == 6 and waits == [0.5] * 3
    log = json.loads((out / "send" / f"{uid}.json").read_text())
    assert log["store_url"] == f"dimse://{store_to}"
    assert all(e["status"] == "failed" and e["attempts"] == 2 and "0xA700" in e["error"]
               for e in log["instances"].values())
    assert {p.stem for p in (out / "cache" / uid).glob("*.dcm")} == sops
    assert sorted(p.name for p in (out / "results" / uid).rglob("*.dcm")) == ["sc.dcm", "seg.dcm", "sr.dcm"]
    before = orthanc.instance_count()

    # 2. the command line, C-STORE to Orthanc itself (C-FIND by date and modality)
    assert main(["pacs", "--dimse", peer, "--date", "20240101-20240131", "--modality", "MR",
                 "-o", str(out), "-q"]) == 0
    assert orthanc.instance_count() == before + 3
    _check_results_in_orthanc(orthanc, uid, out)

    # 3. a rerun sends nothing new
    assert main(["pacs", "--dimse", peer, "--study-uid", uid, "-o", str(out), "-q"]) == 0
    assert orthanc.instance_count() == before + 3
    report = json.loads((out / "pacs.json").read_text())
    assert report["studies"][uid]["sent"] == 0 and report["studies"][uid]["already_sent"] == 3
    assert "Secret^Person" not in caplog.text  # no patient name in any log line, even at debug level


def test_a_silent_dimse_peer_times_out(tmp_path):
    """A peer that accepts the connection and never answers: every operation ends, as a PacsError."""
    import socket
    import time

    from medseg.pacs.dimse import DimseTransport

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        transport = DimseTransport(load_config(None, dimse={"peer": f"SILENT@127.0.0.1:{port}"}, timeout_s=1))
        start = time.monotonic()
        with pytest.raises(PacsError, match="association with SILENT@127.0.0.1"):
            transport.query(StudyQuery(date="20240105"))
        with pytest.raises(PacsError, match="association"):
            transport.store(pydicom.Dataset())
        assert time.monotonic() - start < 10
