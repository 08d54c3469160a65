"""Finding studies and series under folders and files.

A study is the set of series that share a StudyInstanceUID (or one NIfTI/MGZ file). A folder may
hold several studies, any file names, and files that are not images: those are listed as skipped,
damaged files as errors, and a scan never stops on one bad file.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np

from medseg.errors import CorruptFileError, InputError, NoImagesError
from medseg.io.atomic import safe_name
from medseg.io.dicom_headers import FileHeader, NotDicom, NotImageDicom, read_header
from medseg.io.dicom_stack import Stack, load_stack, split_series
from medseg.io.nifti import file_uid, is_nifti_path, read_nifti
from medseg.progress import progress
from medseg.volume import LPS_TO_RAS, Volume, VolumeMeta

log = logging.getLogger(__name__)


@dataclass
class SeriesRef:
    """One loadable image of a study: a DICOM stack or a NIfTI/MGZ file. Loads lazily."""

    study_uid: str
    series_uid: str
    series_number: int | None
    description: str
    modality: str
    label: str
    kind: str  # "dicom" or "nifti"
    source: str
    files: list[str]
    shape: tuple[int, ...]
    affine: np.ndarray | None
    problems: list[str] = field(default_factory=list)
    frame_of_reference_uid: str = ""
    body_part: str = ""
    study_attributes: dict = field(default_factory=dict, repr=False)
    _stack: Stack | None = field(default=None, repr=False)
    _key: str = ""

    @property
    def key(self) -> str:
        """Unique id of this image: the SeriesInstanceUID, plus the stack label for split series
        (and the series number where an exporter reused one SeriesInstanceUID)."""
        return self._key or (f"{self.series_uid}.{self.label}" if self.label else self.series_uid)

    @property
    def name(self) -> str:
        """A safe, readable output name (never a path separator or control character)."""
        number = f"{self.series_number:04d}" if self.series_number is not None else "0000"
        parts = [number, safe_name(self.description, max_length=40, fallback="series")]
        if self.label:
            parts.append(safe_name(self.label, max_length=20))
        return "_".join(parts) if self.kind == "dicom" else safe_name(self.description)

    @property
    def spacing(self) -> tuple[float, ...] | None:
        if self.affine is None:
            return None
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        if self.affine is None:
            return "?"
        return "".join(nib.aff2axcodes(LPS_TO_RAS @ self.affine))

    @property
    def ok(self) -> bool:
        return self._stack is None or self._stack.error is None

    def load(self) -> Volume:
        """Decode the image into a Volume.

        Raises:
            MissingGeometryError, InconsistentSeriesError, CorruptFileError: with the series named.
        """
        if self.kind == "nifti":
            return read_nifti(self.source)
        meta = VolumeMeta(
            modality=self.modality,
            study_uid=self.study_uid,
            series_uid=self.series_uid,
            stack=self.label,
            description=self.description,
            source=self.source,
            series_number=self.series_number,
            frame_of_reference_uid=self.frame_of_reference_uid,
            dicom=self.study_attributes,
        )
        return load_stack(self._stack, meta)

    def summary(self) -> dict:
        """A JSON-ready description (no patient-identifying attributes)."""
        return {
            "key": self.key,
            "series_uid": self.series_uid,
            "series_number": self.series_number,
            "description": self.description,
            "modality": self.modality,
            "stack": self.label,
            "kind": self.kind,
            "orientation": self.orientation,
            "shape": list(self.shape),
            "spacing_mm": [round(s, 4) for s in self.spacing] if self.spacing else None,
            "n_files": len(self.files),
            "problems": list(self.problems),
        }


@dataclass
class Study:
    uid: str
    series: list[SeriesRef]

    def summary(self) -> dict:
        return {"study_uid": self.uid, "series": [s.summary() for s in self.series]}


@dataclass
class ScanResult:
    studies: list[Study]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not images
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, error): damaged files

    @property
    def series(self) -> list[SeriesRef]:
        return [s for study in self.studies for s in study.series]

    def summary(self) -> dict:
        return {
            "studies": [s.summary() for s in self.studies],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "errors": [{"path": p, "error": e} for p, e in self.errors],
        }


RUN_MARKER = ".medseg-output"  # written by `medseg run` into its output folder: never scanned


def iter_files(paths: Iterable[str | os.PathLike],
               exclude: Iterable[str | os.PathLike] = ()) -> list[str]:
    """All files under the given files/folders, sorted, hidden files and folders left out.

    Folders under ``exclude`` and sub-folders holding medseg's run marker (``.medseg-output``,
    an output folder of an earlier run) are left out, so outputs inside the input are not read.
    """
    skip = {os.path.realpath(p) for p in exclude}
    found: list[str] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _excluded(
                    os.path.join(root, d), skip))
                found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        else:
            raise NoImagesError(f"{path}: no such file or folder")
    return found


def _excluded(folder: str, skip: set[str]) -> bool:
    return os.path.realpath(folder) in skip or os.path.exists(os.path.join(folder, RUN_MARKER))


def _nifti_ref(path: str) -> SeriesRef:
    uid = file_uid(path)
    try:
        image = nib.load(path)
        shape, affine, problems = tuple(image.shape), LPS_TO_RAS @ image.affine, []
    except Exception as exc:
        shape, affine, problems = (), None, [f"cannot read header ({type(exc).__name__})"]
    name = Path(path).name
    return SeriesRef(study_uid=uid, series_uid=uid, series_number=None,
                     description=name.split(".")[0], modality="", label="", kind="nifti",
                     source=path, files=[path], shape=shape, affine=affine, problems=problems)


def _series_refs(headers: list[FileHeader]) -> list[SeriesRef]:
    first = headers[0]
    number = f"{first.series_number}" if first.series_number is not None else "?"
    series_name = f"#{number} '{first.description}' ({first.series_uid})"
    refs = []
    for stack in split_series(headers, series_name):
        files = sorted({f.path for f in stack.frames})
        refs.append(
            SeriesRef(
                study_uid=first.study_uid, series_uid=first.series_uid,
                series_number=first.series_number, description=first.description,
                modality=first.modality, label=stack.label, kind="dicom",
                source=os.path.commonpath(files) if len(files) > 1 else files[0], files=files,
                shape=stack.shape, affine=stack.affine, problems=list(stack.problems),
                frame_of_reference_uid=first.frame_of_reference_uid, body_part=first.body_part,
                study_attributes=first.study_attributes, _stack=stack,
            )
        )
    return refs


def scan(paths: str | os.PathLike | Sequence[str | os.PathLike], *, philips_precise: bool = True,
         show_progress: bool = False, exclude: Iterable[str | os.PathLike] = ()) -> ScanResult:
    """Find every study and series under ``paths`` (files or folders). Never raises on one file.

    Raises:
        NoImagesError: a path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = iter_files(paths, exclude)
    # SeriesNumber is part of the key: some exporters reuse one SeriesInstanceUID for several
    # series (dcm2niix splits those too).
    series: dict[tuple[str, str, int | None], list[FileHeader]] = defaultdict(list)
    seen_instances: set[tuple] = set()
    nifti_refs: list[SeriesRef] = []
    damaged: dict[tuple, list[tuple[str, str]]] = defaultdict(list)  # (study, series) -> (file, SOP UID)
    result = ScanResult(studies=[])
    for path in progress(files, desc="scanning", unit="file", enabled=show_progress):
        if is_nifti_path(path):
            nifti_refs.append(_nifti_ref(path))
            continue
        try:
            header = read_header(path, philips_precise=philips_precise)
        except (NotDicom, NotImageDicom) as exc:
            result.skipped.append((path, str(exc)))
            continue
        except CorruptFileError as exc:
            result.errors.append((path, str(exc)))
            damaged[(getattr(exc, "study_uid", None), getattr(exc, "series_uid", None))].append(
                (path, getattr(exc, "sop_instance_uid", "")))
            continue
        except Exception as exc:  # a damaged header must not stop the scan
            result.errors.append((path, f"{path}: unreadable DICOM header ({type(exc).__name__})"))
            continue
        if header.sop_instance_uid:
            instance = (header.series_uid, header.series_number, header.sop_instance_uid)
            if instance in seen_instances:
                result.skipped.append((path, "duplicate of an instance already found"))
                continue
            seen_instances.add(instance)
        series_uid = header.series_uid or f"no-series-uid:{os.path.dirname(path)}"
        series[(header.study_uid, series_uid, header.series_number)].append(header)

    # A damaged copy of an instance that is also present intact does not make a series incomplete.
    instances = {(study, uid): {h.sop_instance_uid for h in headers}
                 for (study, uid, _), headers in series.items()}
    by_study: dict[str, list[SeriesRef]] = defaultdict(list)
    for (study_uid, _, _), headers in series.items():
        by_study[study_uid].extend(_series_refs(headers))
    for study_uid, refs in by_study.items():
        for ref in refs:
            intact = instances.get((ref.study_uid, ref.series_uid), set())
            _flag_damaged(ref, [p for p, sop in damaged.get((ref.study_uid, ref.series_uid), [])
                                if not sop or sop not in intact])
        keys = [r.key for r in refs]
        for ref in refs:
            if keys.count(ref.key) > 1:
                ref._key = f"{ref.key}#{ref.series_number}"
        refs.sort(key=lambda r: (r.series_number if r.series_number is not None else 1 << 30,
                                 r.series_uid, r.label))
        result.studies.append(Study(uid=study_uid, series=refs))
    result.studies.extend(Study(uid=ref.study_uid, series=[ref]) for ref in nifti_refs)
    for path, message in result.errors:
        log.warning("damaged file: %s", message)
    return result


def _flag_damaged(ref: SeriesRef, paths: list[str]) -> None:
    """A series with damaged files is incomplete: flag it and refuse to load it."""
    if not paths:
        return
    error = CorruptFileError(
        f"series {ref.key}: {len(paths)} file(s) of this series are damaged (e.g. {paths[0]}); "
        "refusing to load an incomplete series"
    )
    ref.problems.insert(0, str(error))
    if ref._stack is not None:
        ref._stack.error = error  # the root cause, ahead of any gap it leaves


def load_volume(path: str | os.PathLike, series: str | None = None) -> Volume:
    """Load one image from a file or folder (notebook convenience).

    Args:
        path: a NIfTI/MGZ file, a DICOM file or a folder.
        series: the series key (``SeriesRef.key``) or number, needed when ``path`` holds several.

    Raises:
        NoImagesError: nothing readable under ``path``.
        InputError: several series and none chosen.
    """
    if is_nifti_path(path) and Path(path).is_file():
        return read_nifti(path)
    refs = scan(path).series
    if series is not None:
        refs = [r for r in refs if series in (r.key, r.series_uid, str(r.series_number))]
    if not refs:
        raise NoImagesError(f"{path}: no readable image series" +
                            (f" matching {series!r}" if series else ""))
    if len(refs) > 1:
        listing = ", ".join(f"{r.key} (#{r.series_number} {r.description})" for r in refs)
        raise InputError(f"{path}: holds {len(refs)} image series; choose one of: {listing}")
    return refs[0].load()
