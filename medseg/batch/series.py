"""Per-series commands (``medseg segment/preprocess/position/stitch``): which series a stage can
use, and one stage applied to each of them with every failure recorded and the rest done.

Exit status as the CLI's: 0 all succeeded, 1 some failed, 2 none succeeded (or nothing usable).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from medseg.errors import MedsegError, os_error_message
from medseg.io.scan import ScanResult, SeriesRef
from medseg.volume import Volume

log = logging.getLogger("medseg")

EXIT_OK, EXIT_PARTIAL, EXIT_FAILED = 0, 1, 2

Work = Callable[[SeriesRef, Volume, Path], Iterable[Path]]
Select = Callable[[ScanResult], Iterable[SeriesRef]]


def one_line(exc: BaseException) -> str:
    """A one-line description of an error: medseg's message, a file-system error with its errno,
    or the type and message of an unexpected exception (a bug: the traceback goes to -v)."""
    if isinstance(exc, MedsegError):
        return str(exc)
    if isinstance(exc, OSError):
        return os_error_message(exc)
    log.debug("traceback", exc_info=exc)
    return f"internal error ({type(exc).__name__}: {exc}); run with -v for the traceback"


def brain_series(result: ScanResult) -> Iterator[SeriesRef]:
    """Series a brain stage can use: 3D volumes and sagittal stacks (3D, one volume)."""
    from medseg.batch.routing import is_brain_image

    for ref in result.series:
        if ref.affine is None or not ref.ok or len(ref.shape) != 3:
            continue
        if is_brain_image(ref.affine, ref.shape):
            yield ref


def image_series(result: ScanResult) -> Iterator[SeriesRef]:
    """Every series that loads as one 3D image (any orientation)."""
    for ref in result.series:
        if ref.affine is not None and ref.ok and len(ref.shape) == 3:
            yield ref


def report_broken(refs: Sequence[SeriesRef]) -> int:
    """Log each damaged or invalid series (never left out silently); their number."""
    broken = [ref for ref in refs if not ref.ok]
    for ref in broken:
        log.error("%s (%s): %s", ref.name, type(ref.error).__name__, one_line(ref.error or Exception()))
    return len(broken)


def run_per_series(inputs: Sequence[Path], output: Path, work: Work, *, select: Select = brain_series,
                   quiet: bool = False) -> int:
    """Apply ``work(ref, volume, out_dir)`` to each usable series under ``inputs``, printing every
    path it writes; errors are logged and the other series go on. Returns the exit status."""
    from medseg.io import scan
    from medseg.io.atomic import unique_names

    result = scan(list(inputs), show_progress=not quiet)
    # a damaged or invalid series (or another modality) is a failure of its own; the others still run
    failures = report_broken(result.series)
    refs = []
    for ref in select(result):
        if ref.kind == "dicom" and ref.modality and ref.modality.upper() != "MR":
            failures += 1
            log.error("%s: modality %s (medseg handles MR)", ref.name, ref.modality)
        else:
            refs.append(ref)
    if not refs:
        log.error("no usable image series found under %s", ", ".join(map(str, inputs)))
        return EXIT_FAILED
    done = 0
    names = unique_names([(ref.name, ref.key) for ref in refs])
    for ref, name in zip(refs, names):
        out = output if len(refs) == 1 else output / name
        try:
            for path in work(ref, ref.load(), out):
                print(path)
            done += 1
        except Exception as exc:  # one series' failure (or bug) is reported; the others go on
            failures += 1
            log.error("%s (%s): %s", name, type(exc).__name__, one_line(exc))
    return EXIT_FAILED if failures and not done else EXIT_PARTIAL if failures else EXIT_OK


def station_sets(refs: Sequence[SeriesRef], series: Sequence[str] = ()) -> list[list[SeriesRef]]:
    """The composing sets of ``medseg stitch``: the series named in ``series`` (key, UID or
    number), all of them when they are NIfTI files given explicitly, else those found by
    :func:`medseg.spine.find_station_sets`."""
    from medseg.spine import find_station_sets

    if series:
        wanted = set(series)
        chosen = [r for r in refs if {r.key, r.series_uid, str(r.series_number)} & wanted]
        return [chosen] if chosen else []
    if refs and all(r.kind == "nifti" for r in refs):
        return [list(refs)]  # NIfTI files given explicitly are the stations
    return [list(s) for s in find_station_sets(list(refs))]
