"""The header of a common DICOM image file, read without pydicom's element conversion.

Written by hand because pydicom converts every element it is asked for through its generic
machinery (about 0.8 ms per classic file, three quarters of a header scan: 6x dcm2niix's whole
conversion of a 170-file series), and no library reads a few tags of a data set faster from
Python. This reader covers only the common case and answers None for anything else, which then
goes through pydicom (:func:`medseg.io.dicom_headers.read_header`):

- a Part-10 file ('DICM' after the preamble) in explicit or implicit VR little endian with
  native pixel data, or in an encapsulated (compressed) transfer syntax of explicit VR little
  endian (its fragments are then walked by dicom_headers._pixel_element, as for pydicom's path);
- classic or enhanced multi-frame (the functional groups the frame builder reads are parsed
  into nested views, see SEQUENCE_KEYWORDS), or a Siemens mosaic whose CSA image header sits in
  the usual private block (0029,10xx) (the private elements the Philips, GE and Siemens rules
  read are kept, see PRIVATE_TAGS and PRIVATE_SEQUENCES);
- the default character repertoire, ISO_IR 100 (Latin-1) or ISO_IR 192 (UTF-8);
- every element read here well formed (a number that does not parse, an unexpected VR, an
  element running past the end: None).

Other sequences and all other elements are skipped by their lengths (an undefined-length one walked
item by item to its delimiter); the walk stops at the pixel data
element, whose value offset and length are returned. The values read are those pydicom gives
(the same types for UI, PN, DS and IS; strings stripped as pydicom strips them), so the frames
built from them are the same: tests/test_fast_header.py compares both readers on every file.
"""

from __future__ import annotations

import struct
import warnings
from typing import Any

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
# The functional-group sequences of enhanced multi-frame objects the frame builder reads
# (dicom_headers._enhanced_frames), and what it reads inside their items.
SEQUENCE_KEYWORDS = (
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "PlanePositionSequence",
    "PlaneOrientationSequence", "PixelMeasuresSequence", "PixelValueTransformationSequence",
    "FrameContentSequence", "MREchoSequence", "MRImageFrameTypeSequence", "MRDiffusionSequence",
    "RealWorldValueMappingSequence",
)
ITEM_KEYWORDS = ("FrameType", "StackID", "TemporalPositionIndex", "DimensionIndexValues",
                 "EffectiveEchoTime", "DiffusionBValue", "RealWorldValueIntercept", "RealWorldValueSlope")
# Private elements the vendor rules read (dicom_headers._philips_scaling, _ge_pepolar_direction),
# by tag as pydicom's ``ds.get((group, element))`` reads them: Philips MRScaleSlope, GE pulse
# sequence names and user data 12; Siemens' CSA private creator and image header (the tile count
# and slice normal of a mosaic, dicom_headers._mosaic_frames).
PRIVATE_TAGS = (0x2005100E, 0x0019109C, 0x0019109E, 0x001910B3, 0x00290010, 0x00291010)
# A private sequence read the same way: Philips' per-frame private item (MRScaleSlope and rescale
# values of an enhanced object, dicom_headers._philips_private_item).
PRIVATE_SEQUENCES = (0x2005140F,)
# The private creators of those elements, by group, at the block they own in files as scanners
# write them ((gggg,00bb) names block bb: (2005,0010) owns (2005,10xx)). Some anonymisers and
# PACS move a block to another slot; such a file goes to pydicom's reading, where
# dicom_headers.relocate_private_blocks moves the block back, as dcm2niix does.
PRIVATE_CREATORS = {
    0x0019: {"GEMS_ACQU_01": 0x10},
    0x0029: {"SIEMENS CSA HEADER": 0x10},
    0x2005: {"Philips MR Imaging DD 001": 0x10, "Philips MR Imaging DD 005": 0x14},
}

# (tag, VR) of each keyword above, as in the DICOM data dictionary: written out rather than read
# from pydicom's, so that a scan of common files never imports pydicom (a third of a second);
# tests/test_fast_header.py checks every entry against pydicom's dictionary.
DICTIONARY: dict[str, tuple[int, str]] = {
    "SpecificCharacterSet": (0x00080005, "CS"), "ImageType": (0x00080008, "CS"),
    "SOPClassUID": (0x00080016, "UI"), "SOPInstanceUID": (0x00080018, "UI"), "StudyDate": (0x00080020, "DA"),
    "StudyTime": (0x00080030, "TM"), "AccessionNumber": (0x00080050, "SH"), "Modality": (0x00080060, "CS"),
    "Manufacturer": (0x00080070, "LO"), "ReferringPhysicianName": (0x00080090, "PN"),
    "StudyDescription": (0x00081030, "LO"), "SeriesDescription": (0x0008103E, "LO"),
    "PatientName": (0x00100010, "PN"), "PatientID": (0x00100020, "LO"),
    "PatientBirthDate": (0x00100030, "DA"), "PatientSex": (0x00100040, "CS"),
    "PatientAge": (0x00101010, "AS"), "BodyPartExamined": (0x00180015, "CS"),
    "SliceThickness": (0x00180050, "DS"), "SpacingBetweenSlices": (0x00180088, "DS"),
    "ProtocolName": (0x00181030, "LO"), "TriggerTime": (0x00181060, "DS"), "EchoNumbers": (0x00180086, "IS"),
    "MagneticFieldStrength": (0x00180087, "DS"), "PatientPosition": (0x00185100, "CS"),
    "StudyInstanceUID": (0x0020000D, "UI"), "SeriesInstanceUID": (0x0020000E, "UI"),
    "StudyID": (0x00200010, "SH"), "SeriesNumber": (0x00200011, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"), "InstanceNumber": (0x00200013, "IS"),
    "ImagePositionPatient": (0x00200032, "DS"), "ImageOrientationPatient": (0x00200037, "DS"),
    "FrameOfReferenceUID": (0x00200052, "UI"), "TemporalPositionIdentifier": (0x00200100, "IS"),
    "ImagesInAcquisition": (0x00201002, "IS"), "SamplesPerPixel": (0x00280002, "US"),
    "NumberOfFrames": (0x00280008, "IS"), "Rows": (0x00280010, "US"), "Columns": (0x00280011, "US"),
    "PixelSpacing": (0x00280030, "DS"), "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"), "PixelRepresentation": (0x00280103, "US"),
    "RescaleIntercept": (0x00281052, "DS"), "RescaleSlope": (0x00281053, "DS"),
    "ComplexImageComponent": (0x00089208, "CS"), "SequenceName": (0x00180024, "SH"),
    "FrameType": (0x00089007, "CS"), "StackID": (0x00209056, "SH"),
    "TemporalPositionIndex": (0x00209128, "UL"), "DimensionIndexValues": (0x00209157, "UL"),
    "EffectiveEchoTime": (0x00189082, "FD"), "DiffusionBValue": (0x00189087, "FD"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ"),
    "PerFrameFunctionalGroupsSequence": (0x52009230, "SQ"), "PlanePositionSequence": (0x00209113, "SQ"),
    "PlaneOrientationSequence": (0x00209116, "SQ"), "PixelMeasuresSequence": (0x00289110, "SQ"),
    "PixelValueTransformationSequence": (0x00289145, "SQ"), "FrameContentSequence": (0x00209111, "SQ"),
    "MREchoSequence": (0x00189114, "SQ"), "MRImageFrameTypeSequence": (0x00189226, "SQ"),
    "MRDiffusionSequence": (0x00189117, "SQ"), "RealWorldValueMappingSequence": (0x00409096, "SQ"),
    "RealWorldValueIntercept": (0x00409224, "FD"), "RealWorldValueSlope": (0x00409225, "FD"),
}
_TAGS = {DICTIONARY[keyword][0]: (keyword, DICTIONARY[keyword][1])
         for keyword in KEYWORDS + ITEM_KEYWORDS + SEQUENCE_KEYWORDS}
_SEQUENCES = {tag for tag, (_, vr) in _TAGS.items() if vr == "SQ"} | set(PRIVATE_SEQUENCES)
assert len(_SEQUENCES) == len(SEQUENCE_KEYWORDS) + len(PRIVATE_SEQUENCES)

_PRIVATE = set(PRIVATE_TAGS)
# Kept as their text (a DS or IS value too, as written: "3" stays "3", not 3.0), as pydicom's
# value classes keep it: copied onto derived series (dicom_headers.STUDY_KEYWORDS), whose writer
# gives them their classes again.
_AS_TEXT = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
          "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
          "StudyDescription", "FrameOfReferenceUID", "PatientPosition", "Manufacturer",
          "MagneticFieldStrength", "SOPClassUID"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = UNDEFINED = 0xFFFFFFFF
_ENCODINGS = {"": "iso8859", "ISO_IR 6": "iso8859", "ISO_IR 100": "latin_1", "ISO_IR 192": "UTF8"}
_STRING_VRS = {"AE", "AS", "CS", "DA", "DT", "TM"}  # pydicom's convert_string: default encoding
_TEXT_VRS = {"SH", "LO", "UC"}  # pydicom's convert_text: the character set, split on backslash
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_DECODABLE = set(_NUMBERS) | _STRING_VRS | _TEXT_VRS | {"UI", "DS", "IS", "PN"}
_FIRST_READ = 1 << 16
_MAX_HEADER = 1 << 22  # a header beyond 4 MB before the pixels: pydicom's business


class NativeSyntax(str):
    """Explicit or implicit VR little endian: the UID with the properties of pydicom's UID that
    :mod:`medseg.io.dicom_headers` reads (without importing pydicom)."""

    is_little_endian = True
    is_deflated = False
    is_encapsulated = False
    is_transfer_syntax = True

    @property
    def is_implicit_VR(self) -> bool:  # noqa: N802 - pydicom's name
        return self == IMPLICIT_LE


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

    def __init__(self, values: dict[str, Any], file_meta: dict[str, Any],
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


def _value(vr: str, raw: bytes, encoding: str, text: bool = False) -> Any:
    """``raw`` as pydicom converts it (see the module docstring), as plain Python values (UI and
    PN as str, DS as float, IS as int: the same numbers and text as pydicom's value classes,
    which the frame builders read as such); with ``text``, DS and IS values as their text. None
    for an empty value."""
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
        return _split(raw.decode("ascii").rstrip("\0 "))
    if vr in ("DS", "IS"):
        number = raw.decode("ascii").strip()
        if not number:
            return None
        try:
            values = _split(number, float if vr == "DS" else _integer)  # (checked also as text)
        except (ValueError, OverflowError, TypeError) as exc:
            raise _Unusual(vr) from exc
        return _split(number) if text else values
    if vr in _STRING_VRS:
        return _split(raw.decode("iso8859").rstrip(" \x00"))
    decoded = raw.decode(encoding)
    if vr in _TEXT_VRS:
        strings = [v.rstrip("\0 ") for v in decoded.split("\\")]
        return strings[0] if len(strings) == 1 else strings
    if vr == "PN":
        return decoded.rstrip("\0 ")
    raise _Unusual(vr)


def _skip_sequence(data: bytes, pos: int, explicit: bool) -> int:
    """The position after an undefined-length sequence starting at ``pos`` (its first item),
    walked element by element without reading values (struct.error past the bytes read)."""
    while True:
        group, element, length = _IMPLICIT_HEAD.unpack_from(data, pos)
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
            code = b""
            if explicit:
                group, element, code, length = _EXPLICIT_HEAD.unpack_from(data, pos)
            else:
                group, element, length = _IMPLICIT_HEAD.unpack_from(data, pos)
            if group == 0xFFFE:
                if element != 0xE00D:
                    raise _Unusual("no item delimiter")
                pos += 8
                break
            if code in _LONG_VRS:
                length = _U32.unpack_from(data, pos + 8)[0]
                pos += 12
            else:
                pos += 8
            if length == _UNDEFINED:
                if explicit and code not in (b"SQ", b"UN"):
                    raise _Unusual(f"undefined length with VR {code!r}")
                pos = _skip_sequence(data, pos, explicit and code == b"SQ")
            else:
                pos += length


_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_IMPLICIT_HEAD = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_VR_NAMES = {code: code.decode() for code in _LONG_VRS} | {
    vr.encode(): vr for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                               "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US")}


def _element_header(data: bytes, pos: int, explicit: bool) -> tuple[int, str | None, int, int]:
    """(tag, VR or None for implicit, value length, value position) of the element at ``pos``.
    Raises struct.error past the bytes read (the hottest function of a scan: one struct call
    for the common short-VR element)."""
    if explicit:
        group, element, code, short = _EXPLICIT_HEAD.unpack_from(data, pos)
        if group != 0xFFFE:
            vr = _VR_NAMES.get(code) or code.decode("ascii", "replace")
            if code in _LONG_VRS:
                return group << 16 | element, vr, _U32.unpack_from(data, pos + 8)[0], pos + 12
            return group << 16 | element, vr, short, pos + 8
    group, element, length = _IMPLICIT_HEAD.unpack_from(data, pos)
    return group << 16 | element, None, length, pos + 8


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


class _Raw:
    """The elements of one data set (the file's, or a sequence item's) as read, not decoded."""

    __slots__ = ("values", "private", "sequences")

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, bytes]] = {}
        self.private: dict[int, tuple[str | None, bytes]] = {}
        self.sequences: dict[int, list[_Raw]] = {}


def _sequence(data: bytes, pos: int, length: int, explicit: bool, depth: int) -> tuple[int, list[_Raw]]:
    """(position after, items) of a sequence whose value starts at ``pos``: items of defined or
    undefined length, in a sequence of defined or undefined length."""
    if depth > 8:
        raise _Unusual("sequences nested too deep")
    stop = None if length == _UNDEFINED else pos + length
    items: list[_Raw] = []
    while stop is None or pos < stop:
        if pos + 8 > len(data):
            raise _NeedMore
        group, element, item_length = _IMPLICIT_HEAD.unpack_from(data, pos)
        tag = group << 16 | element
        pos += 8
        if tag == _SEQUENCE_END and stop is None:
            return pos, items
        if tag != _ITEM:
            raise _Unusual("no item in a sequence")
        raw = _Raw()
        pos, _ = _elements(data, pos, None if item_length == _UNDEFINED else pos + item_length,
                           explicit, raw, depth + 1)
        items.append(raw)
    if pos != stop:
        raise _Unusual("a sequence's items overrun its length")
    return pos, items


def _elements(data: bytes, pos: int, stop: int | None, explicit: bool, raw: _Raw,
              depth: int) -> tuple[int, tuple[int, int, int] | None]:
    """Read the elements of one data set from ``pos`` into ``raw``: up to ``stop`` (an item of
    defined length), the item delimiter (``stop`` None, ``depth`` > 0) or, in the file's own
    data set (``depth`` 0), the pixel data element. Returns (position after, (pixel tag, value
    offset, value length) at depth 0)."""
    previous = 0
    while True:
        if stop is not None and pos >= stop:
            if pos != stop or depth == 0:
                raise _Unusual("an item's elements overrun its length")
            return pos, None
        # _element_header, inlined: this loop runs for every element of every file scanned
        vr: str | None = None
        if explicit:
            group, element, code, length = _EXPLICIT_HEAD.unpack_from(data, pos)
            if group == 0xFFFE:
                length = _U32.unpack_from(data, pos + 4)[0]
                start = pos + 8
            else:
                vr = _VR_NAMES.get(code) or code.decode("ascii", "replace")
                if code in _LONG_VRS:
                    length = _U32.unpack_from(data, pos + 8)[0]
                    start = pos + 12
                else:
                    start = pos + 8
        else:
            group, element, length = _IMPLICIT_HEAD.unpack_from(data, pos)
            start = pos + 8
        tag = group << 16 | element
        if depth and stop is None and tag == _ITEM_END:
            return pos + 8, None
        if tag <= previous:
            raise _Unusual("elements out of order")
        previous = tag
        if depth == 0 and tag in _PIXEL_TAGS:
            if explicit and vr not in ("OB", "OW", "OF", "OD"):
                raise _Unusual(f"pixel data with VR {vr}")
            return start, (tag, start, length)
        if depth == 0 and tag > 0x7FE00010:
            raise _Unusual("no pixel data")
        if group in PRIVATE_CREATORS and 0x10 <= element <= 0xFF and length != _UNDEFINED:
            creator = data[start:start + length].decode("ascii", "replace").strip(" \x00")
            owner = PRIVATE_CREATORS[group].get(creator)
            if owner is not None and owner != element:
                raise _Unusual(f"private block {creator!r} moved to ({group:04X},{element:04X})")
        known = _TAGS.get(tag)
        if tag in _SEQUENCES:
            if vr not in ("SQ", None if known is not None else "SQ"):
                raise _Unusual(f"sequence {tag:08X} with VR {vr}")  # (implicit: known ones only)
            pos, raw.sequences[tag] = _sequence(data, start, length, explicit, depth)
            continue
        if known is None and tag not in _PRIVATE:  # skipped, its value not copied
            if length == _UNDEFINED:
                if explicit and vr not in ("SQ", "UN"):
                    raise _Unusual(f"undefined length with VR {vr}")
                pos = _skip_sequence(data, start, explicit and vr == "SQ")
            else:
                pos = start + length
            continue
        after, value = _element_value(data, vr, length, start, explicit)
        if tag in _PRIVATE:
            if value is None:
                raise _Unusual("a private sequence read by a vendor rule")
            raw.private[tag] = (vr, value)
        if known is not None:
            keyword, dictionary = known
            if vr is not None and vr != dictionary:
                raise _Unusual(f"{keyword} with VR {vr}")
            if value is None:
                raise _Unusual(f"{keyword} as a sequence")
            raw.values[keyword] = (dictionary, value)
        pos = after


def _view(raw: _Raw, encoding: str, file_meta: dict[str, Any], top: bool) -> HeaderView:
    """The decoded view of one data set read by :func:`_elements` (its sequences as lists of
    views, by keyword, or as a PrivateElement for a private one)."""
    values: dict[str, Any] = {}
    for keyword, (vr, data) in raw.values.items():
        value = _value(vr, data, encoding, text=top and keyword in _AS_TEXT)
        if value is not None or vr not in ("DS", "IS"):  # pydicom: empty numbers are absent here
            values[keyword] = value if value is not None else ""
    private: dict[tuple[int, int], PrivateElement] = {}
    for number, (explicit_vr, data) in raw.private.items():
        decoded: Any = data  # implicit VR or UN: the raw bytes, as pydicom keeps them
        if explicit_vr in _DECODABLE:
            decoded = _value(explicit_vr, data, encoding)
        private[(number >> 16, number & 0xFFFF)] = PrivateElement(decoded)
    for number, items in raw.sequences.items():
        views = [_view(item, encoding, {}, top=False) for item in items]
        if number in _TAGS:
            values[_TAGS[number][0]] = views
        else:
            private[(number >> 16, number & 0xFFFF)] = PrivateElement(views)
    return HeaderView(values, file_meta, private)


def _walk(data: bytes, size: int, raw: _Raw) -> tuple[HeaderView, int, int, int]:
    """(view, pixel tag, value offset, value length) of a whole header held in ``data``; the
    file's own elements are read into ``raw`` (what was read before a _NeedMore tells
    :func:`_header_size` how much to read)."""
    if data[128:132] != b"DICM":
        raise _Unusual("no DICM preamble")
    pos, meta = 132, {}
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":  # file meta: explicit VR LE
        pos, tag, value = _element(data, pos, explicit=True)
        if tag in (0x00020002, 0x00020010) and value is not None:
            meta["MediaStorageSOPClassUID" if tag == 0x00020002 else "TransferSyntaxUID"] = \
                value.decode("ascii").rstrip("\0 ")
    syntax: Any = meta.get("TransferSyntaxUID")
    encapsulated = False
    if syntax in (EXPLICIT_LE, IMPLICIT_LE):
        syntax = meta["TransferSyntaxUID"] = NativeSyntax(syntax)
    elif syntax:  # compressed: pydicom decodes it in the end, and knows its transfer syntaxes
        from pydicom.uid import UID

        syntax = meta["TransferSyntaxUID"] = UID(syntax)
        encapsulated = syntax.is_transfer_syntax and syntax.is_encapsulated and not syntax.is_deflated \
            and syntax.is_little_endian and not syntax.is_implicit_VR
    if not isinstance(syntax, NativeSyntax) and not encapsulated:
        raise _Unusual(f"transfer syntax {syntax}")
    _, pixels = _elements(data, pos, None, syntax != IMPLICIT_LE, raw, 0)
    assert pixels is not None
    charset = raw.values.get("SpecificCharacterSet", ("CS", b""))[1].decode("ascii", "replace").strip(" \x00")
    encoding = _ENCODINGS.get(charset)
    if encoding is None:
        raise _Unusual(f"character set {charset}")
    with warnings.catch_warnings():  # pydicom's value classes warn as its reader does; silenced there too
        warnings.simplefilter("ignore")
        view = _view(raw, encoding, meta, top=True)
    tag, offset, length = pixels
    if (length == _UNDEFINED) != encapsulated or (encapsulated and tag != 0x7FE00010):
        raise _Unusual("pixel data not encoded as its transfer syntax says")
    return view, tag, offset, length


def _header_size(raw: _Raw, size: int) -> int:
    """Bytes to read for the whole header of a file whose first elements are in ``raw``: native
    pixel data comes last and fills the file to its end, so the header ends near the file size
    less the pixel bytes that Rows, Columns, NumberOfFrames and BitsAllocated declare (these come
    before the functional groups of an enhanced object, whose header can be megabytes). 0 when
    they are not known yet."""
    try:
        numbers = [_value(*raw.values[k], "ascii")
                   for k in ("Rows", "Columns", "BitsAllocated")]
        frames = _value(*raw.values["NumberOfFrames"], "ascii") if "NumberOfFrames" in raw.values else 1
        rows, columns, bits = (int(n) for n in numbers)
        return max(0, size - rows * columns * int(frames) * bits // 8) + _FIRST_READ
    except (KeyError, TypeError, ValueError, _Unusual):
        return 0


def _siemens_csa(view: HeaderView) -> bool:
    """Whether the CSA image header a mosaic needs is where PRIVATE_TAGS looks for it: private
    block 0x10 of group 0x0029, whose creator is Siemens' (any other block: pydicom's path,
    which finds the block by its creator)."""
    creator = view.get((0x0029, 0x0010))
    value = getattr(creator, "value", None)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return (isinstance(value, str) and value.strip(" \0") == "SIEMENS CSA HEADER"
            and isinstance(getattr(view.get((0x0029, 0x1010)), "value", None), bytes))


def read_common_header(path: str, size: int) -> tuple[HeaderView, tuple[int, int], int, int] | None:
    """(view, pixel tag, value offset, value length) of a common file (module docstring), or
    None for any other file (and for any file this reader cannot follow to its pixel data). The
    length is UNDEFINED (0xFFFFFFFF) for encapsulated pixel data."""
    limit = min(size, _MAX_HEADER)
    try:
        with open(path, "rb") as fp:
            data = fp.read(min(limit, _FIRST_READ))
            while True:
                raw = _Raw()
                try:
                    view, tag, offset, length = _walk(data, size, raw)
                    break
                except (_NeedMore, struct.error):  # (struct.error: an element header past the end)
                    if len(data) >= limit:
                        return None
                    wanted = _header_size(raw, size)  # the header, not the pixels (when known)
                    wanted = wanted if wanted > len(data) else limit
                    data += fp.read(min(limit, wanted) - len(data))
    except (_Unusual, OSError, UnicodeDecodeError, struct.error):
        return None
    image_type = view.get("ImageType")
    types = [str(v).upper() for v in (image_type if isinstance(image_type, list) else [image_type or ""])]
    if "MOSAIC" in types and not _siemens_csa(view):
        return None
    if length != _UNDEFINED and offset + length > size:
        return None  # (a truncated file: pydicom's path names the damage)
    return view, (tag >> 16, tag & 0xFFFF), offset, length
