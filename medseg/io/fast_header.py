"""The header of a common DICOM image file, read without pydicom's element conversion.

Written by hand because pydicom converts every element it is asked for through its generic
machinery (about 0.8 ms per classic file, three quarters of a header scan: 6x dcm2niix's whole
conversion of a 170-file series), and no library reads a few tags of a data set faster from
Python. This reader covers only the common case and answers None for anything else, which then
goes through pydicom (:func:`medseg.io.dicom_headers.read_header`):

- a Part-10 file ('DICM' after the preamble) in explicit or implicit VR little endian, with
  native (uncompressed) pixel data;
- no enhanced multi-frame functional groups, no Siemens mosaic (the private elements the
  Philips and GE rules read are kept, see PRIVATE_TAGS);
- the default character repertoire, ISO_IR 100 (Latin-1) or ISO_IR 192 (UTF-8);
- every element read here well formed (a number that does not parse, an unexpected VR, an
  element running past the end: None).

Sequences and all other elements are skipped by their lengths; the walk stops at the pixel data
element, whose value offset and length are returned. The values read are those pydicom gives
(the same types for UI, PN, DS and IS; strings stripped as pydicom strips them), so the frames
built from them are the same: tests/test_fast_header.py compares both readers on every file.
"""

from __future__ import annotations

import struct
import warnings
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID
from pydicom.valuerep import IS, DSfloat, PersonName

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

# The keywords read_header and the frame builders read (plus the study attributes copied onto
# derived series, see dicom_headers.STUDY_KEYWORDS); every other element is skipped.
KEYWORDS = (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "Modality", "Manufacturer", "ReferringPhysicianName", "StudyDescription",
    "SeriesDescription", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "BodyPartExamined", "SliceThickness", "SpacingBetweenSlices", "ProtocolName",
    "TriggerTime", "EchoNumbers", "MagneticFieldStrength", "PatientPosition", "StudyInstanceUID",
    "SeriesInstanceUID", "StudyID", "SeriesNumber", "AcquisitionNumber", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
    "TemporalPositionIdentifier", "ImagesInAcquisition", "SamplesPerPixel", "NumberOfFrames",
    "Rows", "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "RescaleIntercept", "RescaleSlope", "ComplexImageComponent", "SequenceName",
)
# Private elements the vendor rules read (dicom_headers._philips_scaling, _ge_pepolar_direction),
# by tag as pydicom's ``ds.get((group, element))`` reads them: Philips MRScaleSlope, GE pulse
# sequence names and user data 12.
PRIVATE_TAGS = (0x2005100E, 0x0019109C, 0x0019109E, 0x001910B3)
# Present in a file, these send it to pydicom (enhanced multi-frame objects).
_FULL_PARSER_KEYWORDS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")

_TAGS: dict[int, tuple[str, str]] = {}
for _keyword in KEYWORDS + _FULL_PARSER_KEYWORDS:
    _tag = tag_for_keyword(_keyword)
    assert _tag is not None, _keyword
    _TAGS[_tag] = (_keyword, dictionary_VR(_tag))
    assert " " not in _TAGS[_tag][1], _keyword  # one VR each (no "US or SS")

_PRIVATE = set(PRIVATE_TAGS)
# Kept as pydicom's value classes: copied onto derived series (dicom_headers.STUDY_KEYWORDS, e.g.
# a DS keeps its original text), or read through the class (a SOP class UID's name).
_TYPED = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
          "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
          "StudyDescription", "FrameOfReferenceUID", "PatientPosition", "Manufacturer",
          "MagneticFieldStrength", "SOPClassUID"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_ENCODINGS = {"": "iso8859", "ISO_IR 6": "iso8859", "ISO_IR 100": "latin_1", "ISO_IR 192": "UTF8"}
_STRING_VRS = {"AE", "AS", "CS", "DA", "DT", "TM"}  # pydicom's convert_string: default encoding
_TEXT_VRS = {"SH", "LO", "UC"}  # pydicom's convert_text: the character set, split on backslash
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_DECODABLE = set(_NUMBERS) | _STRING_VRS | _TEXT_VRS | {"UI", "DS", "IS", "PN"}
_FIRST_READ = 1 << 16
_MAX_HEADER = 1 << 22  # a header beyond 4 MB before the pixels: pydicom's business


class _Unusual(Exception):
    """Anything this reader does not cover: the file goes to pydicom."""


class _NeedMore(Exception):
    """The walk reached the end of the bytes read so far."""


class PrivateElement:
    """A private element as ``ds.get((group, element))`` gives it: its ``value`` (decoded for an
    explicit VR; the raw bytes in implicit VR, which the vendor rules decode themselves)."""

    def __init__(self, value: Any):
        self.value = value


class HeaderView:
    """The part of a pydicom Dataset that :mod:`medseg.io.dicom_headers` reads: ``get`` (by
    keyword, or by (group, element) for PRIVATE_TAGS), ``in``, attribute access and
    ``file_meta`` (a dict of the meta UIDs)."""

    def __init__(self, values: dict[str, Any], file_meta: dict[str, UID],
                 private: dict[tuple[int, int], PrivateElement] | None = None):
        self._values = values
        self._private = private or {}
        self.file_meta = file_meta

    def get(self, key: Any, default: Any = None) -> Any:
        if isinstance(key, str):
            return self._values.get(key, default)
        return self._private.get(tuple(key), default)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None


def _integer(text: str) -> int:
    """An IS value as pydicom's IS reads it: "12", " 12 ", "12.0" (but not "12.5")."""
    number = float(text)
    if not number.is_integer():
        raise ValueError(text)
    return int(number) if "." in text or "e" in text.lower() else int(text)


def _split(text: str, kind: Any = str) -> Any:
    items = text.split("\\")
    return kind(items[0]) if len(items) == 1 else [kind(item) for item in items]


def _value(vr: str, raw: bytes, encoding: str, typed: bool = True) -> Any:
    """``raw`` as pydicom converts it (see the module docstring); None for an empty value. With
    ``typed`` False, UI, DS and IS values are plain str, float and int (the same numbers and
    text: what the frame builders read; pydicom's classes validate each value, a third of the
    time here)."""
    if not raw:
        return None
    if vr in _NUMBERS:
        code = _NUMBERS[vr]
        size = struct.calcsize(code)
        if len(raw) % size:
            raise _Unusual(vr)
        numbers = struct.unpack(f"<{len(raw) // size}{code}", raw)
        return numbers[0] if len(numbers) == 1 else list(numbers)
    if vr == "UI":
        return _split(raw.decode("ascii").rstrip("\0 "), UID if typed else str)
    if vr in ("DS", "IS"):
        text = raw.decode("ascii").strip()
        if not text:
            return None
        try:
            if typed:
                return _split(text, DSfloat if vr == "DS" else IS)
            return _split(text, float if vr == "DS" else _integer)
        except (ValueError, OverflowError, TypeError) as exc:
            raise _Unusual(vr) from exc
    if vr in _STRING_VRS:
        return _split(raw.decode("iso8859").rstrip(" \x00"))
    text = raw.decode(encoding)
    if vr in _TEXT_VRS:
        values = [v.rstrip("\0 ") for v in text.split("\\")]
        return values[0] if len(values) == 1 else values
    if vr == "PN":
        return PersonName(text.rstrip("\0 "))
    raise _Unusual(vr)


def _skip_sequence(data: bytes, pos: int, explicit: bool) -> int:
    """The position after an undefined-length sequence starting at ``pos`` (its first item)."""
    while True:
        if pos + 8 > len(data):
            raise _NeedMore
        group, element, length = struct.unpack_from("<HHI", data, pos)
        tag = group << 16 | element
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Unusual("no item in a sequence")
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            if pos + 8 > len(data):
                raise _NeedMore
            group, element = struct.unpack_from("<HH", data, pos)
            if group << 16 | element == _ITEM_END:
                pos += 8
                break
            pos, _, _ = _element(data, pos, explicit)


def _element_header(data: bytes, pos: int, explicit: bool) -> tuple[int, str | None, int, int]:
    """(tag, VR or None for implicit, value length, value position) of the element at ``pos``.
    Raises _NeedMore past the bytes read."""
    if pos + 8 > len(data):
        raise _NeedMore
    group, element = struct.unpack_from("<HH", data, pos)
    if explicit and group != 0xFFFE:
        code = data[pos + 4:pos + 6]
        vr = code.decode("ascii", "replace")
        if code in _LONG_VRS:
            if pos + 12 > len(data):
                raise _NeedMore
            return group << 16 | element, vr, struct.unpack_from("<I", data, pos + 8)[0], pos + 12
        return group << 16 | element, vr, struct.unpack_from("<H", data, pos + 6)[0], pos + 8
    return group << 16 | element, None, struct.unpack_from("<I", data, pos + 4)[0], pos + 8


def _element_value(data: bytes, vr: str | None, length: int, start: int, explicit: bool) -> tuple[int, bytes | None]:
    """(position after, value) of an element whose header :func:`_element_header` read; the value
    is None for a skipped undefined-length sequence."""
    if length == _UNDEFINED:
        if explicit and vr not in ("SQ", "UN"):
            raise _Unusual(f"undefined length with VR {vr}")
        return _skip_sequence(data, start, explicit and vr == "SQ"), None
    end = start + length
    if end > len(data):
        raise _NeedMore
    return end, data[start:end]


def _element(data: bytes, pos: int, explicit: bool) -> tuple[int, int, bytes | None]:
    """(position after, tag, value) of the element at ``pos`` (see :func:`_element_value`)."""
    tag, vr, length, start = _element_header(data, pos, explicit)
    after, raw = _element_value(data, vr, length, start, explicit)
    return after, tag, raw


def _walk(data: bytes, size: int) -> tuple[HeaderView, int, int, int]:
    """(view, pixel tag, value offset, value length) of a whole header held in ``data``."""
    if data[128:132] != b"DICM":
        raise _Unusual("no DICM preamble")
    pos, meta = 132, {}
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":  # file meta: explicit VR LE
        pos, tag, raw = _element(data, pos, explicit=True)
        if tag in (0x00020002, 0x00020010) and raw is not None:
            meta["MediaStorageSOPClassUID" if tag == 0x00020002 else "TransferSyntaxUID"] = \
                UID(raw.decode("ascii").rstrip("\0 "))
    syntax = meta.get("TransferSyntaxUID")
    if syntax not in (EXPLICIT_LE, IMPLICIT_LE):
        raise _Unusual(f"transfer syntax {syntax}")
    explicit = syntax == EXPLICIT_LE
    raw_values: dict[str, tuple[str, bytes]] = {}
    raw_private: dict[int, tuple[str | None, bytes]] = {}
    previous = 0
    while True:
        tag, vr, length, start = _element_header(data, pos, explicit)
        if tag <= previous:
            raise _Unusual("elements out of order")
        previous = tag
        if tag in _PIXEL_TAGS:
            if explicit and vr not in ("OB", "OW", "OF", "OD"):
                raise _Unusual(f"pixel data with VR {vr}")
            if length == _UNDEFINED:
                raise _Unusual("encapsulated pixel data")
            break
        after, raw = _element_value(data, vr, length, start, explicit)
        if tag > 0x7FE00010:
            raise _Unusual("no pixel data")
        if tag in _PRIVATE:
            if raw is None:
                raise _Unusual("a private sequence read by a vendor rule")
            raw_private[tag] = (vr, raw)
        known = _TAGS.get(tag)
        if known is not None:
            keyword, dictionary = known
            if keyword in _FULL_PARSER_KEYWORDS:
                raise _Unusual("enhanced multi-frame")
            if vr is not None and vr != dictionary:
                raise _Unusual(f"{keyword} with VR {vr}")
            if raw is None:
                raise _Unusual(f"{keyword} as a sequence")
            raw_values[keyword] = (dictionary, raw)
        pos = after
    charset = raw_values.get("SpecificCharacterSet", ("CS", b""))[1].decode("ascii", "replace").strip(" \x00")
    encoding = _ENCODINGS.get(charset)
    if encoding is None:
        raise _Unusual(f"character set {charset}")
    values = {}
    with warnings.catch_warnings():  # pydicom's value classes warn as its reader does; silenced there too
        warnings.simplefilter("ignore")
        for keyword, (vr, raw) in raw_values.items():
            value = _value(vr, raw, encoding, typed=keyword in _TYPED)
            if value is not None or vr not in ("DS", "IS"):  # pydicom: empty numbers are absent here
                values[keyword] = value if value is not None else ""
        private = {}
        for number, (explicit_vr, raw) in raw_private.items():
            decoded: Any = raw  # implicit VR or UN: the raw bytes, as pydicom keeps them
            if explicit_vr in _DECODABLE:
                decoded = _value(explicit_vr, raw, encoding)
            private[(number >> 16, number & 0xFFFF)] = PrivateElement(decoded)
    return HeaderView(values, meta, private), tag, start, length


def read_common_header(path: str, size: int) -> tuple[HeaderView, tuple[int, int], int, int] | None:
    """(view, pixel tag, value offset, value length) of a common file (module docstring), or
    None for any other file (and for any file this reader cannot follow to its pixel data)."""
    try:
        with open(path, "rb") as fp:
            data = fp.read(min(size, _FIRST_READ))
            while True:
                try:
                    view, tag, offset, length = _walk(data, size)
                    break
                except _NeedMore:
                    if len(data) >= min(size, _MAX_HEADER):
                        return None
                    data += fp.read(min(size, _MAX_HEADER) - len(data))
    except (_Unusual, OSError, UnicodeDecodeError, struct.error):
        return None
    image_type = view.get("ImageType")
    types = [str(v).upper() for v in (image_type if isinstance(image_type, list) else [image_type or ""])]
    if "MOSAIC" in types or offset + length > size:
        return None  # (a truncated file: pydicom's path names the damage)
    return view, (tag >> 16, tag & 0xFFFF), offset, length
