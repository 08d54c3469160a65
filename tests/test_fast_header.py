"""The common-case header reader (medseg.io.fast_header) gives the same FileHeader as pydicom's
reading, or steps aside: on real vendor files, on files built to exercise its corners, and on
damaged ones (where only pydicom's path may answer)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, generate_uid

from medseg.io import dicom_headers
from medseg.io.fast_header import read_common_header
from tests.conftest import DATA


def _pydicom_header(path: str):
    """read_header with the common-case reader switched off."""
    original = dicom_headers.read_common_header
    dicom_headers.read_common_header = lambda p, s: None
    try:
        return dicom_headers.read_header(path)
    except Exception as exc:  # noqa: BLE001 - compared by type
        return type(exc)
    finally:
        dicom_headers.read_common_header = original


def _header(path: str):
    try:
        return dicom_headers.read_header(path)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


def _comparable(header):
    if isinstance(header, type):
        return header
    attributes = {k: str(v) for k, v in header.study_attributes.items()}
    return dataclasses.replace(header, study_attributes={}), attributes


def _same(path: str) -> bool:
    return _comparable(_header(path)) == _comparable(_pydicom_header(path))


def _fast(path: str) -> bool:
    return read_common_header(path, os.path.getsize(path)) is not None


def _file(path: Path, syntax=ExplicitVRLittleEndian, **attributes) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "MR", "SIEMENS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 3, 7
    ds.SeriesDescription = "t1 sag"
    ds.PatientName = "Doe^Jane"
    ds.ImagePositionPatient = [-12.5, 30.25, 4.0]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.PixelSpacing = [0.9, 1.1]
    ds.SliceThickness = "5"
    ds.Rows, ds.Columns = 6, 5
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.PixelData = np.arange(ds.Rows * ds.Columns, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=True)
    return path


def test_real_vendor_files_read_alike():
    """Every file of the shared DICOM collection (Siemens, GE, Philips; classic, enhanced,
    compressed): the same header either way, most of them through the common-case reader."""
    root = DATA / "dicom"
    if not root.exists():
        pytest.skip(f"real data not available: {root} (set MEDSEG_DATA)")
    files = [str(p) for p in sorted(root.rglob("*")) if p.is_file()]
    different = [f for f in files if not _same(f)]
    assert not different, different[:5]
    assert sum(_fast(f) for f in files) > len(files) // 2
    # Siemens mosaics in little endian (native or compressed) go through the common-case reader
    mosaics = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        if "MOSAIC" in (ds.get("ImageType") or []) and ds.file_meta.TransferSyntaxUID.is_little_endian:
            mosaics.append(f)
    assert all(_fast(f) for f in mosaics), [f for f in mosaics if not _fast(f)]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_corners_of_the_common_case(tmp_path, syntax):
    sequence = Sequence([Dataset(), Dataset()])
    sequence[0].ReferencedSOPInstanceUID = generate_uid()
    sequence[1].ReferencedImageSequence = Sequence([Dataset()])  # nested
    icon = Dataset()  # a thumbnail: pixel data inside a sequence item, skipped by its length
    icon.Rows, icon.Columns, icon.BitsAllocated = 2, 2, 8
    icon.PixelData = bytes(4)
    cases = {
        "plain": {},
        "sequence": {"ReferencedImageSequence": sequence},  # skipped by its lengths
        "icon": {"IconImageSequence": Sequence([icon])},
        "latin1": {"SpecificCharacterSet": "ISO_IR 100", "SeriesDescription": "t1 säg ",
                   "PatientName": "Müller^Jürgen"},
        "utf8": {"SpecificCharacterSet": "ISO_IR 192", "SeriesDescription": "t1 矢状"},
        "multi-valued": {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"], "EchoNumbers": "2"},
        "padded numbers": {"SliceThickness": " 5.0 ", "SeriesNumber": " 12"},
        "empty": {"SeriesDescription": "", "SliceThickness": None, "ProtocolName": "proto",
                  "EchoNumbers": ""},
        "scaled": {"RescaleSlope": "2.5", "RescaleIntercept": "-100"},
        "signed": {"PixelRepresentation": 1, "BitsStored": 16, "HighBit": 15},
        "philips": {"Manufacturer": "Philips Medical Systems"},
        "ge": {"Manufacturer": "GE MEDICAL SYSTEMS", "SequenceName": "epi_pepolar"},
    }
    for name, attributes in cases.items():
        path = str(_file(tmp_path / f"{name}.dcm", syntax, **attributes))
        assert _fast(path), name
        assert _same(path), name
        assert not isinstance(_header(path), type), name


def test_private_vendor_values_reach_the_vendor_rules(tmp_path):
    """Philips MRScaleSlope (2005,100E) read by the common-case reader, in explicit VR (FL) and
    implicit VR (raw bytes): the scaling is pydicom's."""
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        path = tmp_path / f"philips_{syntax.name.replace(' ', '_')}.dcm"
        _file(path, syntax, Manufacturer="Philips Medical Systems", RescaleSlope="2.0", RescaleIntercept="0")
        ds = pydicom.dcmread(path)
        ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", 0.25)
        ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian,
                   little_endian=True)
        assert _fast(str(path)) and _same(str(path))
        frame = dicom_headers.read_header(str(path)).frames[0]
        assert frame.slope == pytest.approx(4.0)  # 1 / MRScaleSlope


def _enhanced(path: Path, undefined: bool, philips: bool = False) -> Path:
    """An enhanced MR object of 4 frames: shared pixel measures and orientation, per-frame
    positions, frame content, rescale, echo and frame type (two stacks, two echo times), an
    unrelated sequence beside them, and (``philips``) a per-frame private item with
    MRScaleSlope; every sequence and item of undefined length when ``undefined``."""
    ds = pydicom.dcmread(_file(path, NumberOfFrames=4, Rows=3, Columns=2, ImagePositionPatient=None,
                               ImageOrientationPatient=None, PixelSpacing=None, SliceThickness=None,
                               Manufacturer="Philips Medical Systems" if philips else "SIEMENS"))
    ds.PixelData = np.arange(4 * 3 * 2, dtype=np.uint16).tobytes()

    def item(**values):
        item = Dataset()
        for keyword, value in values.items():
            setattr(item, keyword, value)
        return item

    shared = item(PixelMeasuresSequence=Sequence([item(PixelSpacing=[0.5, 0.75], SliceThickness="2")]),
                  PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[0, 1, 0, 0, 0, -1])]),
                  ReferencedImageSequence=Sequence([item(ReferencedSOPInstanceUID=generate_uid())]))
    frames = []
    for index in range(4):
        frame = item(
            PlanePositionSequence=Sequence([item(ImagePositionPatient=[1.5 * index, -20, 30])]),
            FrameContentSequence=Sequence([item(StackID=str(1 + index % 2), TemporalPositionIndex=1,
                                                DimensionIndexValues=[1, index + 1])]),
            PixelValueTransformationSequence=Sequence([item(RescaleSlope="2", RescaleIntercept="-5",
                                                            RescaleType="US")]),
            MREchoSequence=Sequence([item(EffectiveEchoTime=2.5 + index // 2)]),
            MRImageFrameTypeSequence=Sequence([item(FrameType=["ORIGINAL", "PRIMARY", "M", "NONE"],
                                                    ComplexImageComponent="MAGNITUDE")]),
        )
        if philips:
            private = item()
            block = private.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            block.add_new(0x0E, "FL", 0.25 * (index + 1))
            frame.add_new((0x2005, 0x0014), "LO", "Philips MR Imaging DD 005")  # (its block 0x14)
            frame.add_new((0x2005, 0x140F), "SQ", Sequence([private]))
        frames.append(frame)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    if undefined:
        def mark(dataset):
            for element in dataset:
                if element.VR == "SQ":
                    element.is_undefined_length = True
                    for child in element.value:
                        child.is_undefined_length_sequence_item = True
                        mark(child)
        mark(ds)
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return path


@pytest.mark.parametrize("undefined", [False, True])
def test_enhanced_multiframe_read_alike(tmp_path, undefined):
    """The functional groups parsed by the common-case reader: the frames are pydicom's (per-frame
    positions, shared spacing and orientation, stacks, echo times, rescale, Philips per-frame
    MRScaleSlope), in sequences of defined and of undefined length."""
    for philips in (False, True):
        path = str(_enhanced(tmp_path / f"enhanced_{philips}.dcm", undefined, philips))
        assert _fast(path) and _same(path)
        frames = dicom_headers.read_header(path).frames
        assert [f.ipp for f in frames] == [(1.5 * i, -20.0, 30.0) for i in range(4)]
        assert {f.pixel_spacing for f in frames} == {(0.5, 0.75)}
        assert len({f.split_key for f in frames}) == 4  # 2 stacks x 2 echo times
        expected = [1 / (0.25 * (i + 1)) for i in range(4)] if philips else [2.0] * 4
        assert [f.slope for f in frames] == pytest.approx(expected)


def test_encapsulated_pixel_data_read_alike(tmp_path):
    """A compressed (RLE) file through the common-case reader, its fragments walked as pydicom's
    path walks them; cut inside a fragment it is damaged either way."""
    from pydicom.uid import RLELossless

    path = _file(tmp_path / "rle.dcm")
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    assert _fast(str(path)) and _same(str(path))
    assert dicom_headers.read_header(str(path)).frames[0].layout is None  # decoded by pydicom
    cut = tmp_path / "rle_cut.dcm"
    cut.write_bytes(path.read_bytes()[:-10])
    assert _same(str(cut)) and _header(str(cut)).__name__ == "CorruptFileError"


def test_unusual_and_damaged_files_go_to_pydicom(tmp_path):
    good = _file(tmp_path / "good.dcm")
    data = good.read_bytes()
    cases = {
        "cut in the pixels": data[:-7],
        "cut in the header": data[:300],
        "no preamble": data[128 + 4:],
        "not dicom": b"hello" * 100,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(content)
        assert not _fast(str(path)), name
        assert _same(str(path)), name
    big_endian = tmp_path / "big.dcm"
    ds = pydicom.dcmread(good)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    pydicom.dcmwrite(big_endian, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    assert not _fast(str(big_endian)) and _same(str(big_endian))
    mosaic = _file(tmp_path / "mosaic.dcm", ImageType=["ORIGINAL", "PRIMARY", "M", "MOSAIC"])
    assert not _fast(str(mosaic))
    other_charset = _file(tmp_path / "jis.dcm", SpecificCharacterSet="ISO 2022 IR 87")
    assert not _fast(str(other_charset)) and _same(str(other_charset))


def test_study_attributes_keep_their_text():
    from medseg.io import fast_header

    assert set(dicom_headers.STUDY_KEYWORDS) <= fast_header._AS_TEXT
    assert set(dicom_headers.STUDY_KEYWORDS) <= set(fast_header.KEYWORDS)


def test_dictionary_is_the_dicom_dictionary():
    """The tags and VRs written out in fast_header are pydicom's data dictionary's."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from medseg.io import fast_header

    keywords = fast_header.KEYWORDS + fast_header.ITEM_KEYWORDS + fast_header.SEQUENCE_KEYWORDS
    assert set(fast_header.DICTIONARY) == set(keywords)
    for keyword, (tag, vr) in fast_header.DICTIONARY.items():
        assert (tag, vr) == (tag_for_keyword(keyword), dictionary_VR(tag)), keyword


def test_derived_series_keep_the_study_attributes(tmp_path):
    """Study attributes read as text by the common-case reader are written back onto a derived
    series as pydicom reads them from the source (names, UIDs, dates, a DS value's text)."""
    from medseg.io import scan, write_dicom_series

    (tmp_path / "in").mkdir()
    source = _file(tmp_path / "in" / "a.dcm", MagneticFieldStrength="3", StudyDate="20250101",
                   PatientID="P-77", AccessionNumber="A1")
    assert _fast(str(source))
    volume = scan(source.parent).series[0].load()
    write_dicom_series(volume, tmp_path / "out", series_description="derived", series_number=9)
    written = pydicom.dcmread(next((tmp_path / "out").iterdir()))
    original = pydicom.dcmread(source)
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "AccessionNumber",
                    "MagneticFieldStrength", "Manufacturer", "FrameOfReferenceUID"):
        if keyword in original:
            assert written.get(keyword) == original.get(keyword), keyword
            assert str(written.get(keyword)) == str(original.get(keyword)), keyword
