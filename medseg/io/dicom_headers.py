"""Reading DICOM headers into frame records (no pixel data is decoded here).

Every 2D image a DICOM file holds becomes one :class:`Frame`: a classic single-frame file gives one,
an enhanced multi-frame object one per frame (geometry and scaling from its per-frame and shared
functional groups), a Siemens mosaic one per tile (geometry from its CSA header, through
nibabel's ``nicom`` reader). The stacker (:mod:`medseg.io.dicom_stack`) never needs to know which.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

# Study/patient attributes copied onto derived series so that a PACS files them with the source.
STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
    "PatientPosition",
    "Manufacturer",
    "MagneticFieldStrength",
)

# Storage classes that never hold an image, though some carry (0x7FE0,0x0010)-like payloads.
_NON_IMAGE_MODALITIES = {"SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "REG", "SEG", "DOC"}


@dataclass(frozen=True)
class Frame:
    """One 2D image of a DICOM file, with what is needed to place and scale it.

    ``iop`` is ImageOrientationPatient (row direction cosine, then column direction cosine), ``ipp``
    the LPS position of the first pixel's centre, ``pixel_spacing`` (row spacing, column spacing)
    as in DICOM PixelSpacing. Geometry fields are None when the tags are missing.
    """

    path: str
    rows: int
    cols: int
    ipp: tuple[float, float, float] | None
    iop: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0
    frame_index: int | None = None  # index into a multi-frame object
    tile_index: int | None = None  # index of a Siemens mosaic tile
    mosaic_grid: int = 0  # tiles per mosaic row
    split_key: tuple = ()  # frames with different keys never share a stack (echo, phase/magnitude...)
    order_key: tuple = ()  # order of volumes that share one position (time, b-value, instance)
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None


@dataclass
class FileHeader:
    """The header of one DICOM image file, reduced to what grouping and loading need."""

    path: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    series_number: int | None
    description: str
    modality: str
    manufacturer: str
    frame_of_reference_uid: str
    frames: list[Frame]
    body_part: str = ""
    study_attributes: dict[str, Any] = field(repr=False, default_factory=dict)


class NotDicom(Exception):
    """Raised by :func:`read_header` for files that are not DICOM (skipped silently by scans)."""


class NotImageDicom(Exception):
    """Raised by :func:`read_header` for DICOM files that hold no image (SR, PR, ...)."""


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(np.isfinite(values)):
        return None
    return values


def _float(value: Any, default: float | None = None) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if np.isfinite(result) else default


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _component(image_type: Any) -> str:
    """Magnitude/phase/real/imaginary from ImageType (or ComplexImageComponent)."""
    values = [str(v).upper() for v in (image_type or [])]
    if isinstance(image_type, str):
        values = [image_type.upper()]
    if any(v in ("P", "PHASE", "PHASE MAP") for v in values):
        return "phase"
    if any(v in ("R", "REAL") for v in values):
        return "real"
    if any(v in ("I", "IMAGINARY") for v in values):
        return "imaginary"
    return "magnitude"


def _private_float(element: Any) -> float | None:
    """A private FL element's value; an implicit-VR or anonymised file keeps it as 4 raw bytes (UN)."""
    if element is None:
        return None
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 4:
            return None
        import struct

        value = struct.unpack("<f", bytes(value))[0]
    return _float(value)


def _private_int(element: Any) -> int | None:
    """A private integer element's value (IS/SS/SL), also when it arrives as raw bytes (UN): an
    ASCII number, else a little-endian 2- or 4-byte integer."""
    if element is None:
        return None
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).strip(b" \x00")
        if text.isdigit():
            return int(text)
        if len(value) in (2, 4):
            return int.from_bytes(bytes(value), "little", signed=True)
        return None
    return _int(value)


def _philips_private_item(item: Dataset | None) -> Dataset | None:
    """The first item of a frame's Philips private sequence (2005,140F), if any."""
    if item is None or (0x2005, 0x140F) not in item:
        return None
    sequence = item[(0x2005, 0x140F)].value
    if isinstance(sequence, (bytes, bytearray)) or not len(sequence):
        return None  # an undecoded (UN) private sequence: nothing dependable in it
    return sequence[0]


def _philips_scaling(ds: Dataset, slope: float, intercept: float, precise: bool,
                     frame_item: Dataset | None = None) -> tuple[float, float]:
    """Philips 'precise floating point' values, as dcm2niix writes them by default.

    FP = (SV * RS + RI) / (RS * SS), with SS = MRScaleSlope (2005,100E) (Chenevert et al. 2014,
    PMC3998685). Enhanced multi-frame files may keep SS only inside each frame's private
    (2005,140F) item (``frame_item``: the frame's per-frame functional group); the frame's own
    value wins over a top-level one. Without the private tag, or with ``precise=False``, the
    display values are kept.
    """
    if not precise or "PHILIPS" not in str(ds.get("Manufacturer", "")).upper():
        return slope, intercept
    private = _philips_private_item(frame_item)
    scale_slope = _private_float(private.get((0x2005, 0x100E))) if private is not None else None
    if not scale_slope:
        scale_slope = _private_float(ds.get((0x2005, 0x100E)))
    if not scale_slope or slope == 0:
        return slope, intercept
    return 1.0 / scale_slope, intercept / (slope * scale_slope)


def _has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in ((0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)))


def _check_pixel_length(ds: Dataset, path: str) -> None:
    """Catch truncated files cheaply, before any decoding: a deferred pixel data element must lie
    within the file, and uncompressed pixel data must hold Rows x Columns x frames x bits."""
    from medseg.errors import CorruptFileError

    if (0x7FE0, 0x0010) not in ds:
        return
    element = ds.get_item((0x7FE0, 0x0010))
    value_tell = getattr(element, "value_tell", None)
    length = getattr(element, "length", None)
    if value_tell is not None and length not in (None, 0xFFFFFFFF):
        if value_tell + length > os.path.getsize(path):
            raise CorruptFileError(
                f"{path}: truncated DICOM file (pixel data needs {length} bytes from offset "
                f"{value_tell}, file has {os.path.getsize(path)})")
        return
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        return  # encapsulated: the decoder catches damage
    value = element.value if hasattr(element, "value") else None
    if isinstance(value, (bytes, bytearray)):
        expected = (int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * int(ds.get("NumberOfFrames", 1) or 1)
                    * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.get("BitsAllocated", 16) or 16)) // 8
        if len(value) < expected:
            raise CorruptFileError(f"{path}: truncated DICOM file (pixel data holds {len(value)} of "
                                   f"{expected} bytes)")


def open_dataset(path: str, *, pixels: bool) -> Dataset:
    """Read a DICOM file; files without the 'DICM' preamble are accepted when they parse as DICOM.

    Raises:
        NotDicom: the file is not DICOM at all.
    """
    kwargs: dict[str, Any] = {} if pixels else {"defer_size": 1024}
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        pass
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NotDicom(f"not readable as DICOM ({type(exc).__name__})") from exc
    # No preamble: old ACR-NEMA style or raw data set. Accept only if core image tags are there.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, **kwargs)
        ok = "SOPInstanceUID" in ds and ("Rows" in ds or "SOPClassUID" in ds)
    except Exception as exc:  # pydicom raises many types on random bytes
        raise NotDicom(f"not DICOM ({type(exc).__name__})") from exc
    if not ok:
        raise NotDicom("not DICOM (no preamble and no SOP Instance UID)")
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return ds


def _ge_pepolar_direction(ds: Dataset) -> str:
    """``"rev"`` or ``"fwd"`` for the volumes of a GE ``epi_pepolar`` series that mixes reverse and
    forward phase-encoding volumes, else ``""`` (as dcm2niix tells them apart: the pulse
    sequence name, user data 12 (0019,10B3): 2 = reverse then forward, 3 = forward then reverse,
    alternating by volume, the first volume as the first named; 1 = all reverse, not mixed).
    The volume index is TemporalPositionIdentifier - 1. Reverse volumes are stored with the
    phase-encoding axis flipped, so the two kinds must never share one 4D stack."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper():
        return ""
    names = [ds.get((0x0019, 0x109C)), ds.get((0x0019, 0x109E)), ds.get((0x0018, 0x0024))]
    text = " ".join(str(e.value if hasattr(e, "value") else e) for e in names if e is not None).lower()
    if "epi_pepolar" not in text:
        return ""
    mode = _private_int(ds.get((0x0019, 0x10B3)))
    volume = (_int(ds.get("TemporalPositionIdentifier")) or 1) - 1
    if mode == 2:  # reverse, forward, reverse...
        return "rev" if volume % 2 == 0 else "fwd"
    if mode == 3:  # forward, reverse, forward...
        return "fwd" if volume % 2 == 0 else "rev"
    return ""


def _classic_frames(ds: Dataset, path: str, precise: bool) -> list[Frame]:
    slope = _float(ds.get("RescaleSlope"), 1.0) or 1.0
    intercept = _float(ds.get("RescaleIntercept"), 0.0) or 0.0
    slope, intercept = _philips_scaling(ds, slope, intercept, precise)
    image_type = ds.get("ImageType")
    split_key = (
        ("echo", _int(ds.get("EchoNumbers")) or 1),
        ("component", _component(image_type)),
    )
    pepolar = _ge_pepolar_direction(ds)
    if pepolar:
        split_key += (("phase_encoding", pepolar),)
    order_key = (
        _int(ds.get("TemporalPositionIdentifier")) or 0,
        _int(ds.get("AcquisitionNumber")) or 0,
        _float(ds.get("TriggerTime"), 0.0),
        _int(ds.get("InstanceNumber")) or 0,
    )
    common = dict(
        path=path,
        iop=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
        slope=slope,
        intercept=intercept,
        split_key=split_key,
        order_key=order_key,
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
    )
    if "MOSAIC" in [str(v).upper() for v in (image_type or [])]:
        return _mosaic_frames(ds, common)
    return [
        Frame(
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            ipp=_floats(ds.get("ImagePositionPatient"), 3),
            **common,
        )
    ]


def _mosaic_frames(ds: Dataset, common: dict[str, Any]) -> list[Frame]:
    """Siemens mosaic: one frame per tile; the CSA header (nibabel.nicom) gives tile count and the
    true position of the first slice (a mosaic's IPP refers to the whole mosaic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel flags nicom as experimental; checked vs dcm2niix
        from nibabel.nicom import dicomwrappers

        wrapper = dicomwrappers.wrapper_from_data(ds)
        if not isinstance(wrapper, dicomwrappers.MosaicWrapper):
            raise NotImageDicom("mosaic image without a readable Siemens CSA header")
        tile_rows, tile_cols, n_tiles = (int(v) for v in wrapper.image_shape[:3])
        affine = np.asarray(wrapper.affine)  # (row, col, tile) -> LPS
    grid = int(np.ceil(np.sqrt(n_tiles)))
    frames = []
    for tile in range(n_tiles):
        position = affine @ np.array([0.0, 0.0, tile, 1.0])
        frames.append(
            Frame(rows=tile_rows, cols=tile_cols, ipp=tuple(position[:3]), tile_index=tile,
                  mosaic_grid=grid, **common)
        )
    return frames


def _group(item: Dataset, shared: Dataset | None, sequence: str) -> Dataset | None:
    for source in (item, shared):
        if source is not None and sequence in source and len(source[sequence].value):
            return source[sequence][0]
    return None


def _enhanced_frames(ds: Dataset, path: str, precise: bool) -> list[Frame]:
    """Frames of an enhanced multi-frame object (per-frame functional groups)."""
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n_frames = _int(ds.get("NumberOfFrames")) or 1
    frames = []
    for index in range(n_frames):
        item = per_frame[index] if index < len(per_frame) else Dataset()
        position = _group(item, shared, "PlanePositionSequence")
        orientation = _group(item, shared, "PlaneOrientationSequence")
        measures = _group(item, shared, "PixelMeasuresSequence")
        transform = _group(item, shared, "PixelValueTransformationSequence")
        content = _group(item, shared, "FrameContentSequence")
        echo = _group(item, shared, "MREchoSequence")
        frame_type = _group(item, shared, "MRImageFrameTypeSequence")
        diffusion = _group(item, shared, "MRDiffusionSequence")
        private = _philips_private_item(item)
        rescale = transform or (private if private is not None and "RescaleSlope" in private else None)
        slope = _float(rescale.get("RescaleSlope") if rescale else ds.get("RescaleSlope"), 1.0)
        intercept = _float(
            rescale.get("RescaleIntercept") if rescale else ds.get("RescaleIntercept"), 0.0
        )
        slope, intercept = _philips_scaling(ds, slope or 1.0, intercept or 0.0, precise, item)
        component = _component(
            (frame_type.get("ComplexImageComponent") if frame_type else None)
            or (frame_type.get("FrameType") if frame_type else None)
        )
        split_key = (
            ("echo_time", round(_float(echo.get("EffectiveEchoTime") if echo else None, 0.0), 3)),
            ("component", component),
            ("stack", str(content.get("StackID", "")) if content else ""),
        )
        order_key = (
            _int(content.get("TemporalPositionIndex")) if content else 0,
            _float(diffusion.get("DiffusionBValue") if diffusion else None, 0.0),
            tuple(content.get("DimensionIndexValues", []) or []) if content else (),
            index,
        )
        frames.append(
            Frame(
                path=path,
                rows=int(ds.Rows),
                cols=int(ds.Columns),
                ipp=_floats(position.get("ImagePositionPatient") if position else None, 3),
                iop=_floats(orientation.get("ImageOrientationPatient") if orientation else None, 6),
                pixel_spacing=_floats(measures.get("PixelSpacing") if measures else None, 2),
                slope=slope or 1.0,
                intercept=intercept or 0.0,
                frame_index=index,
                split_key=split_key,
                order_key=tuple(v if v is not None else 0 for v in order_key),
                slice_thickness=_float(measures.get("SliceThickness")) if measures else None,
                spacing_between_slices=(
                    _float(measures.get("SpacingBetweenSlices")) if measures else None
                ),
            )
        )
    return frames


def read_header(path: str, *, philips_precise: bool = True) -> FileHeader:
    """Read one file's header into a :class:`FileHeader`.

    Raises:
        NotDicom: not a DICOM file.
        NotImageDicom: DICOM without an image (structured report, presentation state...).
        CorruptFileError: a DICOM image whose pixel data is cut short.
    """
    ds = open_dataset(path, pixels=False)
    modality = str(ds.get("Modality", "") or "")
    if modality.upper() in _NON_IMAGE_MODALITIES or not _has_pixels(ds):
        raise NotImageDicom(f"DICOM without image data (modality {modality or 'unknown'})")
    if (_int(ds.get("SamplesPerPixel")) or 1) != 1:
        raise NotImageDicom("colour DICOM image (screenshot or secondary capture), not a scan")
    if "Rows" not in ds or "Columns" not in ds:
        from medseg.errors import CorruptFileError

        raise CorruptFileError(f"{path}: DICOM image without Rows/Columns")
    try:
        _check_pixel_length(ds, path)
    except Exception as exc:
        exc.series_uid = str(ds.get("SeriesInstanceUID", "") or "")  # type: ignore[attr-defined]
        exc.study_uid = str(ds.get("StudyInstanceUID", "") or "")  # type: ignore[attr-defined]
        exc.sop_instance_uid = str(ds.get("SOPInstanceUID", "") or "")  # type: ignore[attr-defined]
        raise
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        frames = _enhanced_frames(ds, path, philips_precise)
    else:
        frames = _classic_frames(ds, path, philips_precise)
    study_attributes = {k: ds.get(k) for k in STUDY_KEYWORDS if k in ds}
    return FileHeader(
        path=path,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        series_number=_int(ds.get("SeriesNumber")),
        description=str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ""),
        modality=modality,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        frames=frames,
        body_part=str(ds.get("BodyPartExamined", "") or "").upper(),
        study_attributes=study_attributes,
    )
