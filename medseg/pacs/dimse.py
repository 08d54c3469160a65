"""The DIMSE transport of ``medseg pacs`` (pynetdicom): C-FIND, C-GET or C-MOVE, C-STORE.

- query: C-FIND at STUDY level (Study Root) by StudyDate, ModalitiesInStudy, StudyInstanceUID;
- retrieve: C-GET (preferred: the instances come back on the same association, for which we
  offer the storage SOP classes below in the SCP role) or C-MOVE to our own Storage SCP, started
  for the retrieve on ``move_port`` and shut down after it;
- store: C-STORE on one association per study send, re-opened after a failure.

Every association and DIMSE operation has a timeout (``timeout_s``), and associations are
released (or aborted after an error) in every case, so a silent peer cannot hang the loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import pydicom
from pydicom.dataset import Dataset

from medseg.pacs.config import DimseConfig, PacsConfig, PacsError, Peer
from medseg.pacs.loop import StudyQuery

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger(__name__)

# What a study we read or write may hold: MR, CT, enhanced MR, secondary capture, SEG, SR.
STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR Storage
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR Storage
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR Storage
)
FIND, GET, MOVE = ("1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.3", "1.2.840.10008.5.1.4.1.2.2.2")
SUCCESS, PENDING = 0x0000, (0xFF00, 0xFF01)
STORED_WITH_WARNING = (0xB000, 0xB006, 0xB007)  # coercion / elements discarded: the instance is stored


class DimseTransport:
    def __init__(self, config: PacsConfig):
        # pynetdicom's debug messages can dump identifiers and datasets (patient data): keep them out of
        # medseg's -v logs unless its logger was set up on purpose
        if logging.getLogger("pynetdicom").level == logging.NOTSET:
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        if config.dimse is None:
            raise PacsError("a DIMSE transport needs a DIMSE peer (--dimse or a 'dimse' block)")
        self._dimse: DimseConfig = config.dimse
        self._timeout = float(config.timeout_s)
        self._source: Peer = self._dimse.source
        self._store_peer: Peer = self._dimse.store_peer
        self._store_assoc: Association | None = None
        self.name = f"dimse://{self._store_peer}"

    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self._dimse.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        ae.connection_timeout = self._timeout
        return ae

    def _associate(self, ae, peer: Peer, **kwargs):
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, **kwargs)
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
            raise PacsError(f"association with {peer} {why}")
        return assoc

    def query(self, query: StudyQuery) -> list[str]:
        ae = self._ae()
        ae.add_requested_context(FIND)
        uids: list[str] = []
        assoc = self._associate(ae, self._source)
        try:
            for uid in query.study_uids or [""]:
                identifier = Dataset()
                identifier.QueryRetrieveLevel = "STUDY"
                identifier.StudyInstanceUID = uid
                identifier.StudyDate = query.date
                identifier.ModalitiesInStudy = query.modality
                for status, found in assoc.send_c_find(identifier, FIND):
                    code = _code(status)
                    if code in PENDING and found is not None:
                        uids.append(str(found.get("StudyInstanceUID", "")))
                    elif code != SUCCESS:
                        raise PacsError(f"C-FIND failed ({_hex(code)})")
                    if len(uids) >= query.limit:
                        break
        finally:
            _close(assoc)
        return uids

    def retrieve(self, study_uid: str, save: Callable[[pydicom.Dataset], None]) -> None:
        from pynetdicom import build_role, evt

        errors: list[str] = []

        def on_store(event) -> int:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                save(ds)
                return SUCCESS
            except Exception as exc:  # refuse the instance; the retrieve then fails below
                errors.append(f"{type(exc).__name__}: {exc}")
                return 0xA700  # out of resources (cannot store)

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study_uid
        ae = self._ae()
        handlers = [(evt.EVT_C_STORE, on_store)]
        if self._dimse.retrieve == "get":
            ae.add_requested_context(GET)
            for uid in STORAGE_CLASSES:
                ae.add_requested_context(uid)
            roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
            assoc = self._associate(ae, self._source, ext_neg=roles, evt_handlers=handlers)
            try:
                self._await(assoc.send_c_get(identifier, GET), "C-GET")
            finally:
                _close(assoc)
        else:
            from pynetdicom.presentation import AllStoragePresentationContexts

            ae.supported_contexts = AllStoragePresentationContexts
            ae.add_requested_context(MOVE)
            server = ae.start_server((self._dimse.move_bind, int(self._dimse.move_port)), block=False,
                                     evt_handlers=handlers, ae_title=self._dimse.destination_ae)
            try:
                assoc = self._associate(ae, self._source)
                try:
                    self._await(assoc.send_c_move(identifier, self._dimse.destination_ae, MOVE), "C-MOVE")
                finally:
                    _close(assoc)
            finally:
                server.shutdown()
        if errors:
            raise PacsError(f"{len(errors)} retrieved instance(s) not saved: {errors[0]}")

    @staticmethod
    def _await(responses, operation: str) -> None:
        """Consume C-GET/C-MOVE responses; anything but full success (failed or warning
        sub-operations, cancel, timeout) is an error, so a partial study is never run."""
        final = None
        for status, _ in responses:
            final = status
        code = _code(final)
        if code != SUCCESS:
            failed = int(getattr(final, "NumberOfFailedSuboperations", 0) or 0) if final else 0
            raise PacsError(f"{operation} failed ({_hex(code)}, {failed} failed sub-operations)")

    def store(self, ds: pydicom.Dataset) -> None:
        if self._store_assoc is None or not self._store_assoc.is_established:
            ae = self._ae()
            for uid in STORAGE_CLASSES:
                ae.add_requested_context(uid)
            self._store_assoc = self._associate(ae, self._store_peer)
        try:
            status = self._store_assoc.send_c_store(ds)
        except Exception as exc:  # e.g. no accepted context for the SOP class or transfer syntax
            self.close()
            raise PacsError(f"C-STORE not possible: {type(exc).__name__}: {str(exc)[:200]}") from exc
        code = _code(status)
        if code == SUCCESS or code in STORED_WITH_WARNING:
            return
        if code is None:  # no answer in time, or the association dropped: open a new one next time
            self.close()
            raise PacsError("C-STORE: no response (timeout or association aborted)")
        raise PacsError(f"the PACS refused the instance (C-STORE {_hex(code)})")

    def close(self) -> None:
        if self._store_assoc is not None:
            _close(self._store_assoc)
            self._store_assoc = None


def _code(status) -> int | None:
    """The Status of a DIMSE response; None for the empty Dataset pynetdicom gives on no answer."""
    return int(status.Status) if status is not None and "Status" in status else None


def _hex(code: int | None) -> str:
    return "no response" if code is None else f"status 0x{code:04X}"


def _close(assoc) -> None:
    """Release an association (abort it when it cannot be released in time)."""
    if assoc.is_established:
        assoc.release()
    if assoc.is_established or assoc.is_alive():
        assoc.abort()
