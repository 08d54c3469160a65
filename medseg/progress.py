"""Progress bars on stderr, shown only for interactive terminals."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, unit: str = "it", enabled: bool = True,
             total: int | None = None) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar on stderr when enabled and stderr is a TTY."""
    show = enabled and sys.stderr.isatty()
    return tqdm(items, desc=desc, unit=unit, disable=not show, file=sys.stderr, total=total,
                leave=False)
