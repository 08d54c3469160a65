"""Errors with a specific meaning for one study, file or series.

Every error names what it is about (a file or a series) so that a batch can record it and go on.
"""

from __future__ import annotations


class MedsegError(Exception):
    """Base class of medseg's expected, reportable errors (bad input, not bugs)."""

    stage: str = "medseg"


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


class OutputError(MedsegError):
    """An output cannot be written (the path is a file, not writable, or the disk is full)."""

    stage = "outputs"


def os_error_message(exc: OSError) -> str:
    """One line for a file-system error, keeping the errno (e.g. ``[errno 28 ENOSPC]``)."""
    import errno as _errno

    code = f" [errno {exc.errno} {_errno.errorcode.get(exc.errno, '?')}]" if exc.errno else ""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{code}{where}"
