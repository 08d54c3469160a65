"""Atomic output: write to a temporary file beside the target, then rename over it.

A reader (or a resumed batch) therefore sees either the complete file or none. With
``durable=True`` the file is also flushed to the disk (fsync) before the rename and its folder
after it, so that a power cut cannot leave a renamed but empty file (used for ``study.json``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

_TEMP_ATTEMPTS = 100


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty, new temporary file in ``folder`` and return its path.

    Unlike ``tempfile.mkstemp`` (mode 0600), the file is created with mode 0666 and the kernel
    applies the process umask, so a finished output gets the permissions a plain ``open()`` would
    give it and shared output folders stay readable. The umask is never read or changed (changing
    it, even briefly, races with other threads creating files).
    """
    for _ in range(_TEMP_ATTEMPTS):
        path = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder / prefix))


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush one file or folder to the disk (folders: their entries, i.e. renames inside them)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if Path(path).is_dir() else os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not Path(path).is_dir():  # some file systems cannot fsync folders; files must succeed
            raise
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """Flush every file and folder under ``root`` (before a finished folder is renamed into place)."""
    for folder, _, files in os.walk(os.fspath(root)):
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder)


def _commit(temp: Path, target: Path, durable: bool) -> None:
    """Rename the finished temporary file over the target (the one place a write becomes visible)."""
    if durable:
        fsync_path(temp)
    os.replace(temp, target)
    if durable:
        fsync_path(target.parent)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "", *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    ``suffix`` keeps the extension that writers use to choose a format (e.g. ``.nii.gz``).
    ``durable`` fsyncs the file before and the folder after the rename.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_path = _create_temp(target.parent, f".{target.name}.", suffix or ".tmp")
    try:
        yield temp_path
        _commit(temp_path, target, durable)
    finally:
        if temp_path.exists():
            temp_path.unlink()


def write_text_atomic(target: str | os.PathLike[str], text: str, *, durable: bool = False) -> Path:
    with atomic_path(target, durable=durable) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(target)


def json_text(data: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None) -> str:
    """``data`` as strict JSON: a NaN or infinite float becomes null (Python's json writes NaN and
    Infinity, which JSON does not have and strict readers, e.g. .NET's System.Text.Json, refuse)."""
    return json.dumps(_finite(data), indent=indent, default=default, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def write_json_atomic(target: str | os.PathLike[str], data: Any, *, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = None, durable: bool = False) -> Path:
    """:func:`write_text_atomic` of :func:`json_text`."""
    return write_text_atomic(target, json_text(data, indent=indent, default=default), durable=durable)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, *, max_length: int = 64, fallback: str = "unnamed") -> str:
    """A file-name-safe rendering of free text (DICOM descriptions): ASCII letters, digits, '.', '_'
    and '-' only; no path separators, control characters, leading dots or empty names."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("_", text).strip("._-")
    text = re.sub(r"_+", "_", text)[:max_length].strip("._-")
    return text or fallback


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def unique_names(items: Sequence[tuple[str, str]]) -> list[str]:
    """Output names that cannot collide: ``(name, key)`` pairs -> names, in order.

    A name shared by several items (compared case-insensitively, for case-insensitive file
    systems) gets ``_<hash of key>`` appended; the hash is of the key (e.g. SeriesInstanceUID and
    stack), so a name is the same in every run over the same input (``--resume`` relies on it).
    Items with equal keys get a counter as a last resort.
    """
    counts: dict[str, int] = {}
    for name, _ in items:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    names: list[str] = []
    taken: set[str] = set()
    for name, key in items:
        candidate = name if counts[name.lower()] == 1 else f"{name}_{short_hash(key)}"
        number = 2
        base = candidate
        while candidate.lower() in taken:
            candidate = f"{base}_{number}"
            number += 1
        taken.add(candidate.lower())
        names.append(candidate)
    return names


def ensure_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder if needed and check that files can be written into it.

    Raises:
        OutputError: the path is an existing file, cannot be created, or is not writable
            (the errno is kept in the message).
    """
    from medseg.errors import OutputError, os_error_message

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output {path} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".medseg-probe-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write into the output folder {path}: {os_error_message(exc)}") from exc
    return path


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a file can be written at ``path`` (e.g. ``--report``).

    Raises:
        OutputError: the path is a folder, or its folder cannot be created or written.
    """
    from medseg.errors import OutputError

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    try:
        ensure_output_dir(path.parent if str(path.parent) else Path("."))
    except OutputError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
