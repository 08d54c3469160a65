"""Connection settings of ``medseg pacs``: a YAML file and the environment, never the command line.

Credentials come from ``MEDSEG_PACS_USERNAME`` / ``MEDSEG_PACS_PASSWORD`` or from the config file
(which should then be readable by its owner only); URLs must not carry them (``user:pass@host``
is refused), so that no credential reaches a command line, a log line or a send log.

A DIMSE peer (C-FIND, C-GET or C-MOVE, C-STORE) is set with a ``dimse:`` block instead of ``url``
(:class:`DimseConfig`); DICOM associations carry no credentials, only AE titles.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml

from medseg.errors import PacsError, PeerError

ENV_USERNAME, ENV_PASSWORD = "MEDSEG_PACS_USERNAME", "MEDSEG_PACS_PASSWORD"


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity: ``AE_TITLE@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Peer":
        try:
            ae_title, address = str(text).split("@", 1)
            host, port_text = address.rsplit(":", 1)
            port = int(port_text)
        except ValueError:
            raise PeerError(f"a DICOM peer is AE_TITLE@HOST:PORT, got {text!r}") from None
        return cls(check_ae_title(ae_title), host, port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(value: str) -> str:
    if not value or len(value) > 16 or "\\" in value or not value.isprintable() or not value.strip():
        raise PeerError(f"bad AE title {value!r} (1 to 16 printable characters, no backslash)")
    return value


@dataclass(frozen=True)
class DimseConfig:
    """Attributes (the ``dimse:`` block of the config file):
        peer: the PACS, ``AE_TITLE@HOST:PORT`` (its called AE title, host, port).
        calling_ae: our AE title (the PACS must know it for C-GET/C-MOVE).
        retrieve: ``get`` (C-GET on the same association; preferred) or ``move`` (C-MOVE to our
            own temporary Storage SCP, which the PACS must know as ``move_ae`` at our address).
        move_ae: the C-MOVE destination AE title (default: ``calling_ae``).
        move_port: the port our Storage SCP listens on during a C-MOVE.
        move_bind: the address it binds (default all interfaces).
        store: where results are C-STOREd, ``AE_TITLE@HOST:PORT`` (default: ``peer``).
    """

    peer: str
    calling_ae: str = "MEDSEG"
    retrieve: Literal["get", "move"] = "get"
    move_ae: str = ""
    move_port: int = 0
    move_bind: str = "0.0.0.0"
    store: str = ""

    def __post_init__(self) -> None:
        Peer.parse(self.peer)
        if self.store:
            Peer.parse(self.store)
        check_ae_title(self.calling_ae)
        if self.retrieve not in ("get", "move"):
            raise PacsError(f"retrieve must be 'get' or 'move', got {self.retrieve!r}")
        if self.retrieve == "move":
            check_ae_title(self.destination_ae)
            if not 0 < int(self.move_port) < 65536:
                raise PacsError("retrieve: move needs move_port (the port of our Storage SCP)")

    @property
    def destination_ae(self) -> str:
        return self.move_ae or self.calling_ae

    @property
    def source(self) -> Peer:
        return Peer.parse(self.peer)

    @property
    def store_peer(self) -> Peer:
        return Peer.parse(self.store or self.peer)


@dataclass(frozen=True)
class PacsConfig:
    """Attributes:
        url: DICOMweb base URL (QIDO-RS, WADO-RS), e.g. ``http://pacs:8042/dicom-web``.
        dimse: a DIMSE peer instead of ``url`` (exactly one of the two).
        store_url: STOW-RS base URL when results go elsewhere (default: ``url``).
        username / password: HTTP basic authentication (kept out of ``repr``).
        timeout_s: per request (DICOMweb), per association and per DIMSE message (DIMSE).
        attempts: tries per stored instance (bounded); waits ``backoff_s * 2**n`` between tries.
        backoff_s: first wait between tries.
    """

    url: str = ""
    dimse: DimseConfig | None = None
    store_url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_s: float = 30.0
    attempts: int = 3
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("url", "store_url"):
            value = getattr(self, name)
            if not value:
                continue
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise PacsError(f"{name} must be an http(s) URL")
            if parts.username or parts.password:
                raise PacsError(f"{name} must not contain credentials: use {ENV_USERNAME}/{ENV_PASSWORD} "
                                "or the config file")
        if bool(self.url) == bool(self.dimse):
            raise PacsError("give either a DICOMweb url or a DIMSE peer (--dimse or a 'dimse' block), not both"
                            if self.url else "no PACS: give --url, --dimse, or 'url' or 'dimse' in the config file")
        if self.store_url and not self.url:
            raise PacsError("store_url is for DICOMweb; a DIMSE store peer is 'store' in the dimse block")
        if self.attempts < 1:
            raise PacsError("attempts must be at least 1")

    @property
    def stow_url(self) -> str:
        return self.store_url or self.url

    @property
    def source_name(self) -> str:
        """Where studies come from, as written in pacs.json."""
        return f"dimse://{self.dimse.source}" if self.dimse else self.url

    @property
    def store_name(self) -> str:
        """Where results go, as written in send logs and pacs.json."""
        return f"dimse://{self.dimse.store_peer}" if self.dimse else self.stow_url

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


def load_config(path: Path | None = None, dimse: dict | None = None, **overrides) -> PacsConfig:
    """Settings from ``path`` (YAML; unknown keys are an error), then ``overrides`` (command-line
    options other than credentials, None = not given; ``dimse`` those of the dimse block), then
    credentials from the environment."""
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PacsError(f"cannot read the PACS config {path}: {exc}") from exc
        _check_settings(values, PacsConfig, f"{path}: ")
    values.update({k: v for k, v in overrides.items() if v is not None})
    block = _check_settings(values.get("dimse") or {}, DimseConfig, "dimse: ")
    block = _check_settings(dict(block, **{k: v for k, v in (dimse or {}).items() if v is not None}),
                            DimseConfig, "dimse: ")
    if block:
        if "peer" not in block:
            raise PacsError("the dimse block needs 'peer' (AE_TITLE@HOST:PORT)")
        values["dimse"] = DimseConfig(**block)
    if os.environ.get(ENV_USERNAME):
        values["username"] = os.environ[ENV_USERNAME]
    if os.environ.get(ENV_PASSWORD):
        values["password"] = os.environ[ENV_PASSWORD]
    return PacsConfig(**values)


def _check_settings(values, cls, where: str) -> dict:
    """``values`` as a mapping holding only fields of ``cls`` (a typo is an error, not a default)."""
    if not isinstance(values, dict):
        raise PacsError(f"{where}expected a mapping of settings")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise PacsError(f"{where}unknown settings {unknown} (known: {sorted(known)})")
    return values
