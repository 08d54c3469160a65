"""Finding studies and series under folders and files.

A study is the set of series that share a StudyInstanceUID (or one NIfTI/MGZ file). A folder may
hold several studies, any file names, and files that are not images: those are listed as skipped,
damaged files as errors, and a scan never stops on one bad file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from medseg.errors import CorruptFileError, InputError, MedsegError, NoImagesError
from medseg.io.atomic import safe_name, sha256_file
from medseg.io.dicom_headers import (
    DEFAULT_LIMITS,
    FileHeader,
    NotDicom,
    NotImageDicom,
    ScanLimits,
    open_dataset,
    read_header,
)
from medseg.io.dicom_stack import Stack, load_stack, split_series
from medseg.io.nifti import file_uid, is_nifti_path, read_nifti
from medseg.io.redact import identity_words, redact, redact_description, study_words
from medseg.progress import progress
from medseg.volume import LPS_TO_RAS, Volume, VolumeMeta, axcodes

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
    # the description as stored, never written out: routing and station grouping read it, so that
    # hiding a patient's name in ``description`` cannot change where a series goes
    stored_description: str = field(default="", repr=False)
    _stack: Stack | None = field(default=None, repr=False)
    _key: str = ""
    _error: Exception | None = field(default=None, repr=False)  # raised on load (NIfTI, damage)

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
        return axcodes(self.affine)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error(self) -> Exception | None:
        """Why this image cannot be loaded (damaged files, bad geometry...), or None."""
        if self._error is not None:
            return self._error
        return self._stack.error if self._stack is not None else None

    def load(self) -> Volume:
        """Decode the image into a Volume.

        Raises:
            MissingGeometryError, InconsistentSeriesError, CorruptFileError: with the series named.
        """
        if self._error is not None:
            raise self._error
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
        if self._stack is None:
            raise RuntimeError(f"series {self.key}: a DICOM series without its stack")
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


FileStatus = str  # "image", "non-image", "damaged", "excluded"


@dataclass
class ScanResult:
    """What a scan found. Every file under the inputs is accounted for in ``files``:

    - ``image``: part of a series (``files[path] = ("image", series key)``);
    - ``non-image``: not an image, with why (also listed in ``skipped``);
    - ``damaged``: unreadable or damaged, with the reason (also listed in ``errors``); the series
      it belongs to (by its header, or by its name among the series' files when the header is
      gone) is flagged and refuses to load;
    - ``excluded``: not opened (FIFOs, devices, sockets, symlink loops, medseg's own outputs).
    """

    studies: list[Study]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not images
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, error): damaged files
    files: dict[str, tuple[FileStatus, str]] = field(default_factory=dict)
    # the patients' name parts, IDs and birth dates in the headers read (medseg.io.redact): paths
    # and messages quoted in logs and summaries hide them
    patient_words: frozenset[str] = frozenset()

    @property
    def series(self) -> list[SeriesRef]:
        return [s for study in self.studies for s in study.series]

    def summary(self) -> dict:
        return {
            "studies": [s.summary() for s in self.studies],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "errors": [{"path": p, "error": e} for p, e in self.errors],
            "files": {status: sum(1 for s, _ in self.files.values() if s == status)
                      for status in ("image", "non-image", "damaged", "excluded")},
        }


OUTPUT_MARKER = ".medseg-output"  # written by `medseg run` into its output folder
RUN_MARKER = OUTPUT_MARKER


@dataclass
class FileListing:
    files: list[str]  # regular files, each once (symlinks resolved)
    excluded: list[tuple[str, str]]  # (path, why not opened)


def list_files(paths: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> FileListing:
    """Every regular file under the given files/folders, sorted, each once.

    Hidden files and folders are left out. FIFOs, devices and sockets are never opened (reading
    one could hang or never end); symbolic links are resolved once, and a file or folder reached
    twice (a link loop, a second link to it) is listed once. Folders under ``exclude`` and any
    folder holding medseg's output marker (:data:`OUTPUT_MARKER`) are skipped, so a run never
    reads its own outputs back.

    Raises:
        NoImagesError: a path does not exist.
    """
    excluded_roots = {os.path.realpath(p) for p in exclude}
    found: list[str] = []
    excluded: list[tuple[str, str]] = []
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()

    def consider(path: str) -> None:
        try:
            info = os.stat(path)  # follows links
        except OSError as exc:
            kind = "broken symbolic link" if os.path.islink(path) else type(exc).__name__
            excluded.append((path, f"not opened: {kind}"))
            return
        if not stat.S_ISREG(info.st_mode):
            kind = ("FIFO" if stat.S_ISFIFO(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode)
                    else "device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "special file")
            excluded.append((path, f"not opened: {kind}, not a regular file"))
            return
        real = os.path.realpath(path)
        if real in seen_files:
            excluded.append((path, f"not opened again: same file as {real}"))
            return
        seen_files.add(real)
        found.append(path)

    def walk(folder: str) -> None:
        real = os.path.realpath(folder)
        if real in seen_dirs:
            excluded.append((folder, "not entered again: folder already scanned (symbolic link loop?)"))
            return
        seen_dirs.add(real)
        if any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in excluded_roots):
            excluded.append((folder, "not scanned: medseg output folder"))
            return
        if os.path.exists(os.path.join(folder, OUTPUT_MARKER)):
            excluded.append((folder, "not scanned: holds medseg outputs"))
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            excluded.append((folder, f"folder not readable ({type(exc).__name__})"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows links; loops are caught by seen_dirs
            except OSError:
                is_dir = False
            if is_dir:
                walk(entry.path)
            else:
                consider(entry.path)

    for path in paths:
        path = str(path)
        if os.path.isdir(path):
            walk(path)
        elif os.path.lexists(path):
            consider(path)
        else:
            raise NoImagesError(f"{path}: no such file or folder")
    return FileListing(found, excluded)


def iter_files(paths: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> list[str]:
    """The regular files :func:`list_files` finds."""
    return list_files(paths, exclude).files



def _nifti_ref(path: str) -> SeriesRef:
    """A NIfTI/MGZ file as a one-image study. A file whose header cannot be read, whose data is
    shorter than its header says, or that holds no voxel carries the error and refuses to load."""
    uid = file_uid(path)
    shape: tuple[int, ...] = ()
    affine = None
    error: Exception | None = None
    try:
        import nibabel as nib  # (here: importing it imports pydicom too, see volume.axcodes)
        from nibabel.analyze import AnalyzeHeader
        from nibabel.spatialimages import SpatialImage

        image = nib.load(path)
        if not isinstance(image, SpatialImage):  # NIfTI and MGZ files load as spatial images
            raise TypeError(f"{type(image).__name__} is not a spatial image")
        shape = tuple(int(n) for n in image.shape)
        affine = LPS_TO_RAS @ image.affine
        if not shape or min(shape) < 1:
            error = CorruptFileError(f"{path}: image holds no voxel (shape {shape})")
        elif not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            error = CorruptFileError(f"{path}: degenerate or non-finite affine")
        elif str(path).lower().endswith(".nii"):
            header = image.header
            if not isinstance(header, AnalyzeHeader):  # NIfTI-1/2 headers derive from Analyze's
                raise TypeError(f"{type(header).__name__} is not a NIfTI header")
            needed = int(header.get_data_offset()) + int(np.prod(shape)) * image.get_data_dtype().itemsize
            if os.path.getsize(path) < needed:
                error = CorruptFileError(f"{path}: truncated NIfTI file ({os.path.getsize(path)} of "
                                         f"{needed} bytes)")
    except Exception as exc:  # nibabel raises several types on damaged files
        error = CorruptFileError(f"{path}: cannot read NIfTI/MGZ header ({type(exc).__name__}: "
                                 f"{str(exc)[:120]})")
    name = Path(path).name
    return SeriesRef(study_uid=uid, series_uid=uid, series_number=None,
                     description=name.split(".")[0], modality="", label="", kind="nifti",
                     source=path, files=[path], shape=shape, affine=affine,
                     problems=[str(error)] if error else [], _error=error)


_DIGITS = re.compile(r"\d+")


def redact_patient(text: str, attributes: dict) -> str:
    """``text`` (a series description) with the patient's name parts, ID and birth date removed
    where they stand as whole words, so that output names, logs and summaries never carry them
    even when an operator typed them in (:mod:`medseg.io.redact`)."""
    return redact_description(text, identity_words(attributes))


def _name_shape(path: str) -> str:
    """A file name with its numbers masked: slices of one series are usually named alike."""
    return _DIGITS.sub("#", os.path.basename(path))


def _same_pixels(a: str, b: str) -> bool:
    try:
        return bool(np.array_equal(open_dataset(a, pixels=True).pixel_array,
                                   open_dataset(b, pixels=True).pixel_array))
    except Exception:  # undecodable: not provably the same image
        return False


def _series_refs(headers: list[FileHeader], limits: ScanLimits = DEFAULT_LIMITS) -> list[SeriesRef]:
    first = headers[0]
    number = f"{first.series_number}" if first.series_number is not None else "?"
    description = redact_patient(first.description, first.study_attributes)
    series_name = f"#{number} '{description}' ({first.series_uid})"  # what error messages quote
    refs = []
    for stack in split_series(headers, series_name, limits):
        files = sorted({f.path for f in stack.frames})
        refs.append(
            SeriesRef(
                study_uid=first.study_uid, series_uid=first.series_uid,
                series_number=first.series_number,
                description=description, stored_description=first.description,
                modality=first.modality, label=stack.label, kind="dicom",
                source=os.path.commonpath(files) if len(files) > 1 else files[0], files=files,
                shape=stack.shape, affine=stack.affine, problems=list(stack.problems),
                frame_of_reference_uid=first.frame_of_reference_uid, body_part=first.body_part,
                study_attributes=first.study_attributes, _stack=stack,
            )
        )
    return refs


def scan(paths: str | os.PathLike | Sequence[str | os.PathLike], *, philips_precise: bool = True,
         show_progress: bool = False, exclude: Sequence[str | os.PathLike] = (),
         limits: ScanLimits = DEFAULT_LIMITS) -> ScanResult:
    """Find every study and series under ``paths`` (files or folders). Never raises on one file.

    Only headers are read (no pixel data). Every file is accounted for in ``ScanResult.files``.
    A damaged or unreadable file marks the series it belongs to, which then refuses to load:
    by the UIDs its header still shows, or, when the header is gone, by its name among the
    series' files in the same folder. Instances that share a SOPInstanceUID within a study are
    kept once when they are byte-identical (or hold identical pixels); otherwise their series
    is inconsistent.

    Args:
        exclude: folders never scanned (e.g. the output folder of a run inside its input).
        limits: ceilings on header-declared sizes and positions.

    Raises:
        NoImagesError: a path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    listing = list_files(paths, exclude)
    result = ScanResult(studies=[])
    for path, why in listing.excluded:
        result.files[path] = ("excluded", why)
    # SeriesNumber is part of the key: some exporters reuse one SeriesInstanceUID for several
    # series (dcm2niix splits those too).
    series: dict[tuple[str, str, int | None], list[FileHeader]] = defaultdict(list)
    instances: dict[tuple[str, str], FileHeader] = {}  # (study, SOP UID) -> first header
    other_series: dict[tuple[str, str], tuple[str, int | None]] = {}  # (study, SOP UID) -> its series
    conflicts: dict[tuple[str, str], list[str]] = defaultdict(list)  # (study, series) -> reasons
    nifti_refs: list[SeriesRef] = []
    damaged: dict[tuple, list[tuple[str, str]]] = defaultdict(list)  # (study, series) -> (file, SOP UID)
    orphans: list[tuple[str, str, bool]] = []  # (file, reason, certainly DICOM) without a header
    damaged_attributes: dict[tuple[str, str], dict] = {}  # (study, series) -> patient attributes

    def record_damage(path: str, message: str, exc: Exception | None) -> None:
        result.errors.append((path, message))
        patient = getattr(exc, "patient_attributes", None)
        if patient:
            damaged_attributes[(getattr(exc, "study_uid", ""), getattr(exc, "series_uid", ""))] = patient
        result.files[path] = ("damaged", message)
        series_uid = getattr(exc, "series_uid", "") if exc is not None else ""
        if series_uid:
            damaged[(getattr(exc, "study_uid", ""), series_uid)].append(
                (path, getattr(exc, "sop_instance_uid", "")))
        else:
            orphans.append((path, message, isinstance(exc, CorruptFileError)))

    for path in progress(listing.files, desc="scanning", unit="file", enabled=show_progress):
        if is_nifti_path(path):
            ref = _nifti_ref(path)
            if ref.error is not None:
                result.errors.append((path, str(ref.error)))
                result.files[path] = ("damaged", str(ref.error))
            else:
                result.files[path] = ("image", ref.key)
            nifti_refs.append(ref)
            continue
        try:
            if os.path.getsize(path) == 0:
                raise NotDicom("empty file")
            header = read_header(path, philips_precise=philips_precise, limits=limits)
        except NotImageDicom as exc:
            result.skipped.append((path, str(exc)))
            result.files[path] = ("non-image", str(exc))
            continue
        except NotDicom as exc:
            result.skipped.append((path, str(exc)))
            result.files[path] = ("non-image", str(exc))
            orphans.append((path, f"{path}: {exc}", False))  # damaged if named like a series' slice
            continue
        except MedsegError as exc:  # damaged header or pixel data, or over the size limits
            record_damage(path, str(exc), exc)
            continue
        except OSError as exc:  # permission denied, I/O error
            record_damage(path, f"{path}: unreadable file ({exc.strerror or type(exc).__name__})", exc)
            continue
        except Exception as exc:  # a damaged header must not stop the scan
            record_damage(path, f"{path}: unreadable DICOM header ({type(exc).__name__})", None)
            continue
        series_uid = header.series_uid or f"no-series-uid:{os.path.dirname(path)}"
        if not header.study_uid:  # no StudyInstanceUID: a study of its own per series, so that the
            # series of several patients never meet in one study (nor in one spine set)
            header.study_uid = "no-study-uid-" + hashlib.sha1(series_uid.encode()).hexdigest()[:16]
        if header.sop_instance_uid:
            instance = (header.study_uid, header.sop_instance_uid)
            other = instances.get(instance)
            if other is not None:
                identical = sha256_file(other.path) == sha256_file(path) or _same_pixels(other.path, path)
                same_series = other_series[instance] == (series_uid, header.series_number)
                if identical and same_series:
                    why = f"duplicate of {other.path} (same SOP Instance UID and content)"
                    result.skipped.append((path, why))
                    result.files[path] = ("non-image", why)
                    continue
                if not identical:
                    conflicts[(header.study_uid, header.series_uid)].append(
                        f"{path} and {other.path} share SOP Instance UID {header.sop_instance_uid} but "
                        "hold different images")
                # identical pixels in another series of the study (a re-export): kept there too
            else:
                instances[instance] = header
                other_series[instance] = (series_uid, header.series_number)
        series[(header.study_uid, series_uid, header.series_number)].append(header)

    by_study: dict[str, list[SeriesRef]] = defaultdict(list)
    for (study_uid, _series_uid, _), headers in series.items():
        refs = _series_refs(headers, limits)
        missing = _missing_images(headers)
        if missing:
            for ref in refs:
                _flag_inconsistent(ref, missing)
        by_study[study_uid].extend(refs)
    all_refs = [ref for refs in by_study.values() for ref in refs]
    _attribute_orphans(all_refs, orphans, damaged, result)
    present = {(ref.study_uid, ref.series_uid) for ref in all_refs}
    for (study_uid, series_uid), items in damaged.items():
        if (study_uid, series_uid) not in present:  # every file of this series is damaged
            files = [p for p, _ in items]
            by_study[study_uid].append(SeriesRef(
                study_uid=study_uid, series_uid=series_uid, series_number=None, description="",
                modality="", label="", kind="dicom", source=files[0], files=files, shape=(),
                affine=None, study_attributes=damaged_attributes.get((study_uid, series_uid), {})))
    for study_uid, refs in by_study.items():
        for ref in refs:
            _flag_damaged(ref, [p for p, sop in damaged.get((ref.study_uid, ref.series_uid), [])
                                # a damaged copy of an instance also present intact is no loss
                                if not sop or (ref.study_uid, sop) not in instances])
            for reason in conflicts.get((ref.study_uid, ref.series_uid), []):
                _flag_inconsistent(ref, reason)
            for path in ref.files:
                result.files[path] = ("image", ref.key)
        keys = [r.key for r in refs]
        for ref in refs:
            if keys.count(ref.key) > 1:
                ref._key = f"{ref.key}#{ref.series_number}"
        refs.sort(key=lambda r: (r.series_number if r.series_number is not None else 1 << 30,
                                 r.series_uid, r.label))
        result.studies.append(Study(uid=study_uid, series=refs))
    result.studies.extend(Study(uid=ref.study_uid, series=[ref]) for ref in nifti_refs)
    result.patient_words = study_words([*(ref.study_attributes for study in result.studies for ref in study.series),
                                        *damaged_attributes.values()])
    for _path, message in result.errors:
        log.warning("damaged file: %s", redact(message, result.patient_words))
    return result


def _attribute_orphans(refs: list[SeriesRef], orphans: list[tuple[str, str, bool]],
                       damaged: dict[tuple, list[tuple[str, str]]], result: ScanResult) -> None:
    """Give damaged files without a readable header to the series they sit among.

    A file belongs to the series whose files in the same folder are named alike (numbers masked:
    ``IM_0034`` and ``IM_0035``). A file that is certainly a damaged DICOM object (its 'DICM'
    magic is there) or that cannot be read at all, in a folder holding series but named like none
    of them, is given to every series of that folder: when in doubt, fail loudly. A readable
    non-DICOM file named unlike the series' files stays a non-image file.
    """
    if not orphans:
        return
    by_folder: dict[str, list[SeriesRef]] = defaultdict(list)
    shapes: dict[tuple[str, str], set[int]] = defaultdict(set)
    for index, ref in enumerate(refs):
        for path in ref.files:
            folder = os.path.dirname(path)
            if not by_folder[folder] or by_folder[folder][-1] is not ref:
                by_folder[folder].append(ref)
            shapes[(folder, _name_shape(path))].add(index)
    for path, message, certain in orphans:
        folder = os.path.dirname(path)
        owners = [refs[i] for i in sorted(shapes.get((folder, _name_shape(path)), ()))]
        was_skipped = result.files.get(path, ("", ""))[0] == "non-image"
        if not owners and (certain or not was_skipped):
            owners = list(dict.fromkeys(by_folder.get(folder, [])))
        if not owners:
            continue
        if was_skipped:  # a file named like the series' slices that is not DICOM: a lost header
            reason = f"{message} (named like the slices of series {owners[0].key}: its header is gone)"
            result.skipped.remove(next(item for item in result.skipped if item[0] == path))
            result.errors.append((path, reason))
            result.files[path] = ("damaged", reason)
        for ref in owners:
            damaged[(ref.study_uid, ref.series_uid)].append((path, ""))


def _missing_images(headers: list[FileHeader]) -> str | None:
    """Why a series holds fewer images than its acquisition declares (ImagesInAcquisition,
    counted per AcquisitionNumber in frames, so mosaics and multi-frame files count their images),
    or None. This catches what geometry cannot: a localizer given without its last slices, or a
    single file of a series."""
    declared: dict[int | None, set[int]] = defaultdict(set)
    held: dict[int | None, int] = defaultdict(int)
    for header in headers:
        held[header.acquisition_number] += len(header.frames)
        if header.images_in_acquisition:
            declared[header.acquisition_number].add(header.images_in_acquisition)
    for acquisition, values in declared.items():
        if len(values) == 1 and held[acquisition] < next(iter(values)):
            return (f"holds {held[acquisition]} of the {next(iter(values))} images its acquisition "
                    f"{acquisition if acquisition is not None else ''} declares (ImagesInAcquisition): "
                    "the series is incomplete")
    return None


def _flag_inconsistent(ref: SeriesRef, reason: str) -> None:
    from medseg.errors import InconsistentSeriesError

    error = InconsistentSeriesError(f"series {ref.key}: {reason}; refusing to load")
    ref.problems.insert(0, str(error))
    if ref._error is None:
        ref._error = error


def _flag_damaged(ref: SeriesRef, paths: list[str]) -> None:
    """A series with damaged files is incomplete: flag it and refuse to load it."""
    if not paths:
        return
    error = CorruptFileError(
        f"series {ref.key}: {len(paths)} file(s) of this series are damaged (e.g. {paths[0]}); "
        "refusing to load an incomplete series"
    )
    ref.problems.insert(0, str(error))
    ref._error = error  # the root cause, ahead of any gap it leaves


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
