"""medseg's errors: one hierarchy, each class named after what went wrong and the stage it belongs to.

Every error names what it is about (a file or a series) so that a batch can record it and go on.
``stage`` is the stage name the batch records for the failure (``study.json`` rows, the seconds
per stage); :data:`STAGES` lists them. The classes are also importable from the modules that raise
them (``medseg.segment.infer.NoCCFoundError`` ...).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Literal, Mapping, get_args

Stage = Literal["config", "route", "load", "mask", "n4", "skullstrip", "segment", "angles", "position",
                "stitch", "outputs", "model", "engine", "pacs", "internal", "medseg"]
STAGES: tuple[str, ...] = get_args(Stage)


class MedsegError(Exception):
    """Base class of medseg's expected, reportable errors (bad input, not bugs)."""

    stage: Stage = "medseg"


class ConfigError(MedsegError):
    """A configuration file does not match its schema."""

    stage = "config"


class InputError(MedsegError):
    """The input cannot be used as given."""

    stage = "load"


class NoImagesError(InputError):
    """A path holds no readable image (no DICOM image, NIfTI or MGZ)."""


class NotAnImageError(InputError):
    """A file is not a DICOM, NIfTI or MGZ image."""


class CorruptFileError(InputError):
    """A file looks like an image but cannot be decoded (truncated, damaged, unsupported codec)."""


class MissingGeometryError(InputError):
    """A DICOM series lacks the tags needed to place it in patient space."""


class InconsistentSeriesError(InputError):
    """A DICOM series cannot form one volume (uneven slice spacing, missing slices, mixed sizes)."""


class InvalidGeometryError(InputError):
    """A DICOM series' geometry tags are present but impossible (zero or negative spacing,
    degenerate orientation, non-finite or absurd positions)."""


class ResourceLimitError(InputError):
    """An input would need more frames, voxels or memory than the configured limits allow
    (``ScanLimits`` of the header scan, ``--max-memory`` of a run)."""


class ModelError(MedsegError):
    """A shipped model or its contract is missing or does not match."""

    stage = "model"


class NoBrainFoundError(MedsegError):
    """Skull stripping found no brain in the image."""

    stage = "skullstrip"


class NoCCFoundError(MedsegError):
    """The model found no corpus callosum in the image."""

    stage = "segment"


class NoCorpusCallosumError(MedsegError):
    """No usable corpus callosum in the mask (empty, too small or fragmented)."""

    stage = "angles"


class OutputError(MedsegError):
    """An output cannot be written (the path is a file, not writable, or the disk is full)."""

    stage = "outputs"


class DicomOutputError(OutputError):
    """A DICOM result object cannot be built for this series (no usable source DICOM).

    Raised by :func:`medseg.dicomout.write_dicom_results` when some objects failed: ``written``
    holds the objects that were written, ``failures`` the reason per failed object (both empty
    otherwise)."""

    written: Mapping[str, Path] = MappingProxyType({})
    failures: Mapping[str, str] = MappingProxyType({})


class DaskEngineError(MedsegError):
    """The distributed engine cannot start (missing extra, bad cluster spec, no scheduler)."""

    stage = "engine"


class PacsError(MedsegError):
    """The PACS cannot be used as configured (bad settings, unreachable, refused)."""

    stage = "pacs"


class PeerError(PacsError, ValueError):
    """A malformed ``AE_TITLE@HOST:PORT`` or AE title."""


def os_error_message(exc: OSError) -> str:
    """One line for a file-system error, keeping the errno (e.g. ``[errno 28 ENOSPC]``)."""
    import errno as _errno

    code = f" [errno {exc.errno} {_errno.errorcode.get(exc.errno, '?')}]" if exc.errno else ""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{code}{where}"
