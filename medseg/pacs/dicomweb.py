"""The DICOMweb transport of ``medseg pacs``: QIDO-RS query, WADO-RS retrieve, STOW-RS store.

The protocol is spoken by ``dicomweb-client``; its own retry is turned off so that every attempt
is counted by :func:`medseg.pacs.loop.send_results`.
"""

from __future__ import annotations

from typing import Callable

import pydicom
import requests

from medseg.pacs.config import PacsConfig, PacsError
from medseg.pacs.loop import StudyQuery


class DicomWebTransport:
    def __init__(self, url: str, config: PacsConfig):
        from dicomweb_client import DICOMwebClient

        self.name = url
        self._session = requests.Session()
        if config.auth:
            self._session.auth = config.auth
        self._client = DICOMwebClient(url, session=self._session, timeout=config.timeout_s)
        self._client.set_http_retry_params(retry=False)

    def query(self, query: StudyQuery) -> list[str]:
        filters = {}
        if query.date:
            filters["StudyDate"] = query.date
        if query.modality:
            filters["ModalitiesInStudy"] = query.modality
        uids: list[str] = []
        for uid in query.study_uids or [None]:
            search = dict(filters, **({"StudyInstanceUID": uid} if uid else {}))
            try:
                found = self._client.search_for_studies(search_filters=search, limit=query.limit)
            except requests.RequestException as exc:
                raise PacsError(f"study query failed: {describe(exc)}") from exc
            uids += [str(item.get("0020000D", {}).get("Value", [""])[0]) for item in found]
        return uids

    def retrieve(self, study_uid: str, save: Callable[[pydicom.Dataset], None]) -> None:
        try:
            datasets = self._client.retrieve_study(study_uid)
        except requests.RequestException as exc:
            raise PacsError(f"retrieving study failed: {describe(exc)}") from exc
        for ds in datasets:
            save(ds)

    def store(self, ds: pydicom.Dataset) -> None:
        try:
            response = self._client.store_instances([ds], study_instance_uid=str(ds.StudyInstanceUID))
        except requests.RequestException as exc:
            raise PacsError(describe(exc)) from exc
        failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"the PACS refused the instance (failure reason {reason})")

    def close(self) -> None:
        self._session.close()


def describe(exc: Exception) -> str:
    """An error message without URLs' credentials or response bodies (which may hold patient data)."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
