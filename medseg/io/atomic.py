"""Atomic output: write to a temporary file beside the target, then rename over it.

A reader (or a resumed batch) therefore sees either the complete file or none.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Iterator

# mkstemp creates files readable by their owner only; finished outputs get the permissions a
# plain open() would give them (0666 minus the umask), so that shared output folders stay readable.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    ``suffix`` keeps the extension that writers use to choose a format (e.g. ``.nii.gz``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp",
                                    dir=target.parent)
    os.close(handle)
    temp_path = Path(temp)
    try:
        yield temp_path
        if temp_path.exists():
            os.chmod(temp_path, _FILE_MODE)
        os.replace(temp_path, target)
    finally:
        if temp_path.exists():
            temp_path.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(target)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, *, max_length: int = 64, fallback: str = "unnamed") -> str:
    """A file-name-safe rendering of free text (DICOM descriptions): ASCII letters, digits, '.', '_'
    and '-' only; no path separators, control characters, leading dots or empty names."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("_", text).strip("._-")
    text = re.sub(r"_+", "_", text)[:max_length].strip("._-")
    return text or fallback
