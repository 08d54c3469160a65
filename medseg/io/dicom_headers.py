"""Reading DICOM headers into frame records (no pixel data is decoded here).

Every 2D image a DICOM file holds becomes one :class:`Frame`: a classic single-frame file gives one,
an enhanced multi-frame object one per frame (geometry and scaling from its per-frame and shared
functional groups), a Siemens mosaic one per tile (geometry from its CSA header, through
nibabel's ``nicom`` reader). The stacker (:mod:`medseg.io.dicom_stack`) never needs to know which.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from medseg.io.fast_header import UNDEFINED, HeaderView, read_common_header
from medseg.io.redact import PATIENT_KEYWORDS

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pydicom is imported only for the files the common-case reader leaves to it
    from pydicom.dataset import Dataset

    # A file's header as the frame builders read it: a pydicom Dataset, or the common-case
    # reader's view of the same elements (medseg.io.fast_header), which answers get/in alike.
    Header = Dataset | HeaderView

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
    layout: "PixelLayout | None" = None  # native pixel data that can be read without pydicom


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
    acquisition_number: int | None = None
    images_in_acquisition: int | None = None  # (0020,1002), when the scanner writes it


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


def _vec3(values: tuple[float, ...] | None) -> tuple[float, float, float] | None:
    """A 3-vector from :func:`_floats` (``values`` has exactly 3 entries when not None)."""
    if values is None:
        return None
    x, y, z = values
    return x, y, z


def _vec2(values: tuple[float, ...] | None) -> tuple[float, float] | None:
    """A pair from :func:`_floats` (``values`` has exactly 2 entries when not None)."""
    if values is None:
        return None
    row, col = values
    return row, col


@overload
def _float(value: Any, default: float) -> float: ...
@overload
def _float(value: Any, default: None = None) -> float | None: ...
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


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _private_int(element: Any) -> int | None:
    """A private integer element's value (IS/DS/SS/SL), also when it arrives as raw bytes (UN, as
    implicit-VR files give it): an ASCII number, rounded as dcm2niix reads it (GE writes user
    data 12 as ``3.000000``), else a little-endian 2- or 4-byte integer."""
    if element is None:
        return None
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).strip(b" \x00").decode("ascii", "replace")
        if _NUMBER.fullmatch(text):
            return int(round(float(text)))
        if len(value) in (2, 4):
            return int.from_bytes(bytes(value), "little", signed=True)
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return int(round(float(value)))
    return _int(value)


def _philips_private_item(item: Any) -> Any:
    """The first item of a frame's Philips private sequence (2005,140F), if any."""
    element = item.get((0x2005, 0x140F)) if item is not None else None
    if element is None:
        return None
    sequence = element.value
    if isinstance(sequence, (bytes, bytearray)) or not len(sequence):
        return None  # an undecoded (UN) private sequence: nothing dependable in it
    return sequence[0]


def _philips_rescale(ds: Any, slope: float, intercept: float, real_world: Any, private: Any
                     ) -> tuple[float, float]:
    """A Philips object's rescale slope and intercept, in dcm2niix's reading order (its
    nii_dicom.cpp, which takes each value as it meets it): the public value, replaced by the
    RealWorldValueMapping's slope where the public slope is 1 (and its intercept where the public
    intercept is 0; its issue 493), then by the private (2005,140F) item's own values, which come
    last in the file. Other vendors' values are returned as they are."""
    if "PHILIPS" not in str(ds.get("Manufacturer", "")).upper():
        return slope, intercept
    if real_world is not None:
        world_slope = _float(real_world.get("RealWorldValueSlope"))
        if world_slope and abs(world_slope) <= 1e38 and slope == 1.0:  # (0: no scaling at all)
            slope = world_slope
        world_intercept = _float(real_world.get("RealWorldValueIntercept"))
        if world_intercept is not None and intercept == 0.0:
            intercept = world_intercept
    if private is not None:
        slope = _float(private.get("RescaleSlope"), slope) or slope
        intercept = _float(private.get("RescaleIntercept"), intercept)
    return slope, intercept


def _philips_scaling(ds: Any, slope: float, intercept: float, precise: bool,
                     frame_item: Any = None) -> tuple[float, float]:
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


@dataclass(frozen=True)
class ScanLimits:
    """Ceilings checked against header-declared sizes before anything is read or allocated.

    A header can declare anything (10^6 frames, positions of 1e300 mm); these bounds turn such a
    file into a clear error instead of minutes of work or an out-of-memory kill.
    """

    max_frames: int = 20_000  # frames of one multi-frame object
    max_voxels: int = 1 << 31  # voxels of one file (Rows x Columns x frames)
    max_position_mm: float = 1e5  # |ImagePositionPatient| (100 m: no scanner bore is larger)
    max_pixel_spacing_mm: float = 1e3


DEFAULT_LIMITS = ScanLimits()

_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"UC", b"UR", b"SQ"}


@dataclass(frozen=True)
class PixelLayout:
    """Where a native (uncompressed) file keeps its pixels, so they can be read without pydicom.

    Written by hand because pydicom parses the whole data set again to decode; this reads the
    bytes straight into the array. ``bits_stored``/``signed`` reproduce pydicom's masking and
    sign extension of values whose BitsStored is below BitsAllocated.
    """

    offset: int
    dtype: str  # numpy dtype with byte order, e.g. "<u2"
    frames: int
    rows: int
    cols: int
    bits_stored: int

    def read(self, path: str) -> np.ndarray:
        dtype = np.dtype(self.dtype)
        count = self.frames * self.rows * self.cols
        array = np.fromfile(path, dtype=dtype, count=count, offset=self.offset)
        if array.size != count:
            from medseg.errors import CorruptFileError

            raise CorruptFileError(f"{path}: pixel data holds {array.size} of {count} values")
        array = array.astype(dtype.newbyteorder("="), copy=False)
        bits = dtype.itemsize * 8
        if dtype.kind in "ui" and 0 < self.bits_stored < bits:
            if dtype.kind == "u":
                array = array & np.array((1 << self.bits_stored) - 1, dtype=array.dtype)
            else:
                shift = bits - self.bits_stored
                array = (array << shift) >> shift
        shape = (self.frames, self.rows, self.cols) if self.frames > 1 else (self.rows, self.cols)
        return array.reshape(shape)


@dataclass(frozen=True)
class _PixelElement:
    offset: int  # file offset of the value
    length: int | None  # None: encapsulated (fragments)
    fragments: int = 0  # encapsulated: fragments after the basic offset table
    tag: tuple[int, int] = (0x7FE0, 0x0010)


def _with_uids(error: Exception, ds: Header | None) -> Exception:
    """``error`` carrying the UIDs the file's (partial) header still shows, so that the scan can
    mark the series it belongs to."""
    for name, keyword in (("study_uid", "StudyInstanceUID"), ("series_uid", "SeriesInstanceUID"),
                          ("sop_instance_uid", "SOPInstanceUID")):
        setattr(error, name, str(ds.get(keyword, "") or "") if ds is not None else "")
    # the patient's identity, so that messages quoting the file's path can hide it (medseg.io.redact)
    patient = {k: ds.get(k) for k in PATIENT_KEYWORDS if k in ds} if ds is not None else {}
    error.patient_attributes = patient  # type: ignore[attr-defined]
    return error


def _damaged(message: str, ds: Header | None = None) -> Exception:
    """A CorruptFileError with the UIDs of the file's header (see :func:`_with_uids`)."""
    from medseg.errors import CorruptFileError

    return _with_uids(CorruptFileError(message), ds)


def _is_image_class(ds: Header) -> bool:
    """Whether the SOP class (or the header) says the object is an image."""
    for uid in (ds.get("SOPClassUID"), (getattr(ds, "file_meta", None) or {}).get("MediaStorageSOPClassUID")):
        if uid is not None and "Image Storage" in str(getattr(uid, "name", "")):
            return True
    return "Rows" in ds and "Columns" in ds


def _pixel_element(fp, ds: Header, size: int, path: str, limits: ScanLimits) -> _PixelElement | None:
    """Locate the pixel data element at ``fp``'s position (where ``stop_before_pixels`` left it)
    and check that its value lies within the file. Encapsulated pixel data is walked fragment by
    fragment (8-byte item headers only) up to its sequence delimiter.

    Returns None when the data set ends without pixel data. Deflated files are not probed (their
    offsets refer to the inflated stream); the decoder catches their damage.
    """
    syntax = (getattr(ds, "file_meta", None) or {}).get("TransferSyntaxUID")
    if syntax is not None and syntax.is_deflated:
        return _PixelElement(offset=-1, length=None) if _has_pixels_after(fp) else None
    little = syntax.is_little_endian if syntax is not None else True
    implicit = syntax.is_implicit_VR if syntax is not None else True
    order = "<" if little else ">"
    position = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    tag = struct.unpack(order + "HH", head[:4])
    if tag not in _PIXEL_TAGS:
        return None
    if implicit:
        (length,), value_at = struct.unpack(order + "I", head[4:8]), position + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            raise _damaged(f"{path}: truncated DICOM file (cut inside the pixel data header)", ds)
        (length,), value_at = struct.unpack(order + "I", head[8:12]), position + 12
    else:
        (length,), value_at = struct.unpack(order + "H", head[6:8]), position + 8
    if length != 0xFFFFFFFF:
        if value_at + length > size:
            raise _damaged(f"{path}: truncated DICOM file (pixel data needs {length} bytes from offset "
                           f"{value_at}, file has {size})", ds)
        return _PixelElement(value_at, length, tag=tag)
    offset, items = value_at, -1  # the first item is the basic offset table
    while True:
        fp.seek(offset)
        item = fp.read(8)
        if len(item) < 8:
            raise _damaged(f"{path}: truncated DICOM file (encapsulated pixel data ends without its "
                           "sequence delimiter)", ds)
        group, element, item_length = struct.unpack("<HHI", item)
        if (group, element) == (0xFFFE, 0xE0DD):
            return _PixelElement(value_at, None, max(items, 0), tag=tag)
        if (group, element) != (0xFFFE, 0xE000) or item_length == 0xFFFFFFFF:
            raise _damaged(f"{path}: damaged encapsulated pixel data (no item tag at offset {offset})", ds)
        offset += 8 + item_length
        items += 1
        if offset > size:
            raise _damaged(f"{path}: truncated DICOM file (a pixel data fragment runs past the end "
                           f"of the file, {size} bytes)", ds)
        if items > 8 * limits.max_frames:
            raise _damaged(f"{path}: encapsulated pixel data with over {8 * limits.max_frames} fragments", ds)


def _has_pixels_after(fp) -> bool:
    return len(fp.read(4)) == 4


def _check_sizes(ds: Header, pixels: _PixelElement, path: str, limits: ScanLimits) -> PixelLayout | None:
    """Header-declared sizes against the file and the limits, before anything is allocated.

    Returns the layout of native pixel data that can be read directly (see :class:`PixelLayout`).
    """
    from medseg.errors import ResourceLimitError

    rows, cols = _int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0
    frames = _int(ds.get("NumberOfFrames")) or 1
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise _damaged(f"{path}: image of {rows} x {cols} pixels and {frames} frame(s)", ds)
    if frames > limits.max_frames or rows * cols * frames > limits.max_voxels:
        raise _with_uids(ResourceLimitError(
            f"{path}: declares {frames} frame(s) of {rows} x {cols} pixels, over the limit of "
            f"{limits.max_frames} frames / {limits.max_voxels} voxels per file"), ds)
    if pixels.offset < 0:
        return None  # deflated: checked by the decoder
    if pixels.length is None:
        if frames > pixels.fragments:
            raise _damaged(f"{path}: declares {frames} frames but its encapsulated pixel data holds "
                           f"{pixels.fragments} fragment(s)", ds)
        return None
    bits = _int(ds.get("BitsAllocated")) or 16
    samples = _int(ds.get("SamplesPerPixel")) or 1
    expected = rows * cols * frames * samples * bits // 8
    if pixels.length < expected:
        raise _damaged(f"{path}: truncated DICOM file (pixel data holds {pixels.length} of {expected} bytes)", ds)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if pixels.tag != (0x7FE0, 0x0010) or samples != 1 or bits not in (8, 16, 32):
        return None
    little = syntax.is_little_endian if syntax is not None else True
    signed = (_int(ds.get("PixelRepresentation")) or 0) == 1
    dtype = ("<" if little else ">") + ("i" if signed else "u") + str(bits // 8)
    return PixelLayout(offset=pixels.offset, dtype=dtype, frames=frames, rows=rows, cols=cols,
                       bits_stored=_int(ds.get("BitsStored")) or bits)


def _has_dicm_magic(path: str) -> bool:
    with open(path, "rb") as fp:
        fp.seek(128)
        return fp.read(4) == b"DICM"


def _read_dataset(path: str, *, stop_before_pixels: bool):
    """(data set, open file positioned after the header) of a DICOM file, preamble or not.

    Raises:
        NotDicom: not DICOM at all.
        CorruptFileError: a DICOM file (it has the 'DICM' magic) whose header cannot be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    fp = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pydicom.dcmread(fp, stop_before_pixels=stop_before_pixels), fp
        except InvalidDicomError:
            pass
        except Exception as exc:  # pydicom raises many types on damaged headers
            if _has_dicm_magic(path):
                raise _damaged(f"{path}: damaged DICOM header ({type(exc).__name__}: "
                               f"{str(exc)[:120]})") from exc
            raise NotDicom(f"not readable as DICOM ({type(exc).__name__})") from exc
        # No preamble: old ACR-NEMA style or raw data set. Accept only if core image tags are there.
        fp.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(fp, force=True, stop_before_pixels=stop_before_pixels)
            ok = "SOPInstanceUID" in ds and ("Rows" in ds or "SOPClassUID" in ds)
        except Exception as exc:
            raise NotDicom(f"not DICOM ({type(exc).__name__})") from exc
        if not ok:
            raise NotDicom("not DICOM (no preamble and no SOP Instance UID)")
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        return ds, fp
    except BaseException:
        fp.close()
        raise


def open_dataset(path: str, *, pixels: bool) -> Dataset:
    """Read a DICOM file (with its pixel data when ``pixels``); files without the 'DICM'
    preamble are accepted when they parse as DICOM.

    Raises:
        NotDicom: the file is not DICOM at all.
        CorruptFileError: a DICOM file whose header is damaged.
    """
    ds, fp = _read_dataset(path, stop_before_pixels=not pixels)
    fp.close()
    return ds


def _ge_pepolar_direction(ds: Dataset) -> tuple[str, bool]:
    """(``"rev"``, ``"fwd"`` or ``""``; whether the series mixes both) for an image of a GE
    ``epi_pepolar`` series, as dcm2niix tells them apart (its issue 532): the pulse sequence
    name, user data 12 (0019,10B3): 0 = all forward, 1 = all reverse, 2 = reverse then forward,
    3 = forward then reverse, alternating by volume, the first volume as the first named. The
    volume index is TemporalPositionIdentifier - 1. Without user data 12 nothing is assumed
    (dcm2niix flips nothing either). Reverse volumes are stored with their rows in reverse order
    (:func:`_reversed_rows_geometry`), so the two kinds must never share one 4D stack."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper():
        return "", False
    names = [ds.get((0x0019, 0x109C)), ds.get((0x0019, 0x109E)), ds.get((0x0018, 0x0024))]
    text = " ".join(str(e.value if hasattr(e, "value") else e) for e in names if e is not None).lower()
    if "epi_pepolar" not in text:
        return "", False
    mode = _private_int(ds.get((0x0019, 0x10B3)))
    position = _int(ds.get("TemporalPositionIdentifier"))
    if mode in (2, 3) and not position:
        return "", False  # alternating, but which volume this is is unknown: dcm2niix flips nothing
    volume = (position or 1) - 1
    if mode == 0:
        return "fwd", False
    if mode == 1:
        return "rev", False
    if mode == 2:  # reverse, forward, reverse...
        return ("rev" if volume % 2 == 0 else "fwd"), True
    if mode == 3:  # forward, reverse, forward...
        return ("fwd" if volume % 2 == 0 else "rev"), True
    return "", False


def _reversed_rows_geometry(ipp, iop, spacing, rows: int):
    """The true geometry of a GE ``epi_pepolar`` reverse volume: its rows are stored in reverse
    order under the forward volumes' header geometry (dcm2niix issue 532; dcm2niix flips the
    rows back). The same correction on the geometry instead of the pixels: the first stored row
    lies where the header puts the last one, and rows advance against the header's column
    direction."""
    if ipp is None or iop is None or spacing is None:
        return ipp, iop
    column = np.asarray(iop[3:], dtype=np.float64)
    first = np.asarray(ipp, dtype=np.float64) + (rows - 1) * float(spacing[0]) * column
    return tuple(float(v) for v in first), tuple(iop[:3]) + tuple(float(-v) for v in column)


def _classic_frames(ds: Dataset, path: str, precise: bool) -> list[Frame]:
    slope = _float(ds.get("RescaleSlope"), 1.0) or 1.0
    intercept = _float(ds.get("RescaleIntercept"), 0.0) or 0.0
    slope, intercept = _philips_rescale(ds, slope, intercept, _group(ds, None, "RealWorldValueMappingSequence"),
                                        _philips_private_item(ds))
    slope, intercept = _philips_scaling(ds, slope, intercept, precise, ds)
    image_type = ds.get("ImageType")
    split_key: tuple[tuple[str, object], ...] = (
        ("echo", _int(ds.get("EchoNumbers")) or 1),
        ("component", _component(image_type)),
    )
    pepolar, mixed = _ge_pepolar_direction(ds)
    if mixed:
        split_key += (("phase_encoding", pepolar),)
    order_key = (
        _int(ds.get("TemporalPositionIdentifier")) or 0,
        _int(ds.get("AcquisitionNumber")) or 0,
        _float(ds.get("TriggerTime"), 0.0),
        _int(ds.get("InstanceNumber")) or 0,
    )
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    if pepolar == "rev":
        ipp, iop = _reversed_rows_geometry(ipp, iop, _floats(ds.get("PixelSpacing"), 2), int(ds.Rows))
    frame = Frame(
        path=path,
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        ipp=_vec3(ipp),
        iop=iop,
        pixel_spacing=_vec2(_floats(ds.get("PixelSpacing"), 2)),
        slope=slope,
        intercept=intercept,
        split_key=split_key,
        order_key=order_key,
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
    )
    if "MOSAIC" in [str(v).upper() for v in (image_type or [])]:
        return _mosaic_frames(ds, frame)
    return [frame]


def _mosaic_frames(ds: Header, whole: Frame) -> list[Frame]:
    """Siemens mosaic: one frame per tile of ``whole`` (the file as one frame); the CSA header
    (nibabel.nicom) gives tile count and the true position of the first slice (a mosaic's IPP
    refers to the whole mosaic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel flags nicom as experimental; checked vs dcm2niix
        from nibabel.nicom import csareader, dicomwrappers

        if isinstance(ds, HeaderView):  # the common-case reader kept the CSA image header's bytes
            csa = csareader.read(ds.get((0x0029, 0x1010)).value)
            wrapper = dicomwrappers.MosaicWrapper(ds, csa) if csareader.is_mosaic(csa) else None
        else:
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
            dataclasses.replace(whole, rows=tile_rows, cols=tile_cols, ipp=tuple(position[:3]),
                                tile_index=tile, mosaic_grid=grid)
        )
    return frames


def _group(item: Any, shared: Any, sequence: str) -> Any:
    """The first item of a functional group ``sequence``, per frame before shared (a pydicom
    Dataset or the common-case reader's view, see :mod:`medseg.io.fast_header`)."""
    for source in (item, shared):
        items = source.get(sequence) if source is not None else None
        if items:
            return items[0]
    return None


def _enhanced_frames(ds: Any, path: str, precise: bool, layout: PixelLayout | None = None) -> list[Frame]:
    """Frames of an enhanced multi-frame object (per-frame functional groups)."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n_frames = _int(ds.get("NumberOfFrames")) or 1
    frames = []
    for index in range(n_frames):
        item = per_frame[index] if index < len(per_frame) else None
        position = _group(item, shared, "PlanePositionSequence")
        orientation = _group(item, shared, "PlaneOrientationSequence")
        measures = _group(item, shared, "PixelMeasuresSequence")
        transform = _group(item, shared, "PixelValueTransformationSequence")
        content = _group(item, shared, "FrameContentSequence")
        echo = _group(item, shared, "MREchoSequence")
        frame_type = _group(item, shared, "MRImageFrameTypeSequence")
        diffusion = _group(item, shared, "MRDiffusionSequence")
        private = _philips_private_item(item)
        slope = _float(transform.get("RescaleSlope") if transform else ds.get("RescaleSlope"), 1.0)
        intercept = _float(
            transform.get("RescaleIntercept") if transform else ds.get("RescaleIntercept"), 0.0
        )
        slope, intercept = _philips_rescale(ds, slope or 1.0, intercept or 0.0,
                                            _group(item, shared, "RealWorldValueMappingSequence"), private)
        slope, intercept = _philips_scaling(ds, slope, intercept, precise, item)
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
                ipp=_vec3(_floats(position.get("ImagePositionPatient") if position else None, 3)),
                iop=_floats(orientation.get("ImageOrientationPatient") if orientation else None, 6),
                pixel_spacing=_vec2(_floats(measures.get("PixelSpacing") if measures else None, 2)),
                slope=slope or 1.0,
                intercept=intercept or 0.0,
                frame_index=index,
                layout=layout,
                split_key=split_key,
                order_key=tuple(v if v is not None else 0 for v in order_key),
                slice_thickness=_float(measures.get("SliceThickness")) if measures else None,
                spacing_between_slices=(
                    _float(measures.get("SpacingBetweenSlices")) if measures else None
                ),
            )
        )
    return frames


def relocate_private_blocks(ds: Any) -> None:
    """Copy the private elements medseg reads back to their usual block, in ``ds`` (read with
    pydicom, in memory only; the file is never written) and in each per-frame item, where an
    anonymiser or PACS moved their private creator to another slot (dcm2niix does the same).
    The usual block: ``fast_header.PRIVATE_CREATORS``."""
    from pydicom.dataelem import DataElement

    from medseg.io.fast_header import PRIVATE_CREATORS, PRIVATE_SEQUENCES, PRIVATE_TAGS

    def elements(group: int, block: int) -> list[int]:
        """The low bytes of the elements medseg reads in ``block`` of ``group``."""
        return [t & 0xFF for t in (*PRIVATE_TAGS, *PRIVATE_SEQUENCES) if t >> 16 == group and (t >> 8) & 0xFF == block]

    def relocate(dataset: Any) -> None:
        for tag in [t for t in dataset.keys() if t.group in PRIVATE_CREATORS and 0x10 <= t.element <= 0xFF]:
            creator = str(dataset[tag].value).strip(" \x00")
            owner = PRIVATE_CREATORS[tag.group].get(creator)
            if owner is None or owner == tag.element:
                continue
            for low in elements(tag.group, owner):
                source = (tag.group, tag.element << 8 | low)
                if source in dataset:
                    element = dataset[source]
                    target = (tag.group, owner << 8 | low)
                    dataset[target] = DataElement(target, element.VR, element.value)

    for dataset in [ds, *(ds.get("PerFrameFunctionalGroupsSequence") or [])]:
        relocate(dataset)
        inner = dataset.get((0x2005, 0x140F))  # Philips' private item: its own creators
        if inner is not None and not isinstance(inner.value, (bytes, bytearray)):
            for item in inner.value:
                relocate(item)


def read_header(path: str, *, philips_precise: bool = True, limits: ScanLimits = DEFAULT_LIMITS) -> FileHeader:
    """Read one file's header into a :class:`FileHeader`, without reading its pixel data.

    The pixel data element is located and checked against the file size (and encapsulated data
    walked fragment by fragment), so a truncated file is caught here, before any decoding.

    Raises:
        NotDicom: not a DICOM file.
        NotImageDicom: DICOM without an image (structured report, presentation state...).
        CorruptFileError: a DICOM image whose header or pixel data is cut short or damaged; it
            carries the study/series/instance UIDs its header still shows.
        ResourceLimitError: the header declares more frames or voxels than ``limits`` allow.
    """
    size = os.path.getsize(path)
    common = read_common_header(path, size)
    if common is not None:
        view, tag, offset, length = common
        try:
            if length == UNDEFINED:  # encapsulated: its fragments walked as below
                with open(path, "rb") as fp:
                    fp.seek(offset - 12)  # the element's header (explicit VR, OB: 12 bytes)
                    pixels = _pixel_element(fp, view, size, path, limits)
            else:
                pixels = _PixelElement(offset, length, tag=tag)
            return _file_header(view, pixels, path, philips_precise, limits, size)
        except Exception:  # noqa: BLE001 - anything unusual: pydicom's reading below decides
            pass
    ds, fp = _read_dataset(path, stop_before_pixels=True)
    try:
        modality = str(ds.get("Modality", "") or "")
        if modality.upper() in _NON_IMAGE_MODALITIES:
            raise NotImageDicom(f"DICOM without image data (modality {modality})")
        pixels = _pixel_element(fp, ds, size, path, limits)
    finally:
        fp.close()
    relocate_private_blocks(ds)
    return _file_header(ds, pixels, path, philips_precise, limits, size)


def _file_header(ds: Any, pixels: _PixelElement | None, path: str, philips_precise: bool,
                 limits: ScanLimits, size: int | None = None) -> FileHeader:
    """The FileHeader of a data set (a pydicom Dataset, or the common-case view of
    :mod:`medseg.io.fast_header`) whose pixel data element has been located."""
    modality = str(ds.get("Modality", "") or "")
    if modality.upper() in _NON_IMAGE_MODALITIES:
        raise NotImageDicom(f"DICOM without image data (modality {modality})")
    if pixels is None:
        if _is_image_class(ds):
            raise _damaged(f"{path}: image object without pixel data (the file ends at byte {size}: "
                           "cut short)", ds)
        raise NotImageDicom(f"DICOM without image data (modality {modality or 'unknown'})")
    if (_int(ds.get("SamplesPerPixel")) or 1) != 1:
        raise NotImageDicom("colour DICOM image (screenshot or secondary capture), not a scan")
    if "Rows" not in ds or "Columns" not in ds:
        raise _damaged(f"{path}: DICOM image without Rows/Columns", ds)
    layout = _check_sizes(ds, pixels, path, limits)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    n_frames = _int(ds.get("NumberOfFrames")) or 1
    if per_frame is not None and len(per_frame) != n_frames:
        raise _damaged(f"{path}: declares {n_frames} frames but has {len(per_frame)} per-frame "
                       "functional group items", ds)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        frames = _enhanced_frames(ds, path, philips_precise, layout)
    else:
        frames = _classic_frames(ds, path, philips_precise)
        if layout is not None:
            frames = [dataclasses.replace(f, layout=layout) for f in frames]
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
        acquisition_number=_int(ds.get("AcquisitionNumber")),
        images_in_acquisition=_int(ds.get("ImagesInAcquisition")),
    )
