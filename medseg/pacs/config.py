"""Connection settings of ``medseg pacs``: a YAML file and the environment, never the command line.

Credentials come from ``MEDSEG_PACS_USERNAME`` / ``MEDSEG_PACS_PASSWORD`` or from the config file
(which should then be readable by its owner only); URLs must not carry them (``user:pass@host``
is refused), so that no credential reaches a command line, a log line or a send log.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from medseg.errors import MedsegError

ENV_USERNAME, ENV_PASSWORD = "MEDSEG_PACS_USERNAME", "MEDSEG_PACS_PASSWORD"


class PacsError(MedsegError):
    """The PACS cannot be used as configured (bad settings, unreachable, refused)."""

    stage = "pacs"


@dataclass(frozen=True)
class PacsConfig:
    """Attributes:
        url: DICOMweb base URL (QIDO-RS, WADO-RS), e.g. ``http://pacs:8042/dicom-web``.
        store_url: STOW-RS base URL when results go elsewhere (default: ``url``).
        username / password: HTTP basic authentication (kept out of ``repr``).
        timeout_s: per request.
        attempts: tries per stored instance (bounded); waits ``backoff_s * 2**n`` between tries.
        backoff_s: first wait between tries.
    """

    url: str
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
        if self.attempts < 1:
            raise PacsError("attempts must be at least 1")

    @property
    def stow_url(self) -> str:
        return self.store_url or self.url

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


def load_config(path: Path | None = None, **overrides) -> PacsConfig:
    """Settings from ``path`` (YAML; unknown keys are an error), then ``overrides`` (command-line
    options other than credentials, None = not given), then credentials from the environment."""
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PacsError(f"cannot read the PACS config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise PacsError(f"{path}: expected a mapping of settings")
        known = {f.name for f in dataclasses.fields(PacsConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PacsError(f"{path}: unknown settings {unknown} (known: {sorted(known)})")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if os.environ.get(ENV_USERNAME):
        values["username"] = os.environ[ENV_USERNAME]
    if os.environ.get(ENV_PASSWORD):
        values["password"] = os.environ[ENV_PASSWORD]
    if not values.get("url"):
        raise PacsError("no PACS URL: give --url or 'url' in the config file")
    return PacsConfig(**values)
