"""Progress bars on stderr, shown only for interactive terminals."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, unit: str = "it", enabled: bool = True,
             total: int | None = None) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar on stderr when enabled and stderr is a TTY (tqdm imported only
    then: its ``auto`` module probes for Jupyter, 60 ms of every start-up otherwise)."""
    if not (enabled and sys.stderr.isatty()):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, total=total, leave=False)
