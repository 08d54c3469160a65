"""Vendor conventions on synthetic pydicom files: Philips per-frame MRScaleSlope inside the
private (2005,140F) item of enhanced multi-frame objects, and GE epi_pepolar series that mix
reverse and forward phase-encoding volumes."""

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from medseg.io import load_volume, scan
from tests.conftest import make_dataset

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def philips_enhanced(path, pixels, *, slope, intercept, scale_slopes, top_level_scale=None,
                     private_rescale=None, real_world=None):
    """One enhanced MR file as a Philips scanner writes it: frame f has RescaleSlope/Intercept
    (``slope`` or ``slope[f]``) in its public transformation group and MRScaleSlope
    ``scale_slopes[f]`` only inside its private (2005,140F) item; frame content (stack, in-stack
    position, dimension index) per frame. ``private_rescale``: (slope, intercept) also inside the
    private item; ``real_world``: (slope, intercept) of a per-frame RealWorldValueMapping."""
    n, rows, cols = pixels.shape
    slopes = list(slope) if np.ndim(slope) else [slope] * n
    ds = Dataset()
    ds.InstanceNumber, ds.PatientPosition, ds.ImageType = 1, "HFS", ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.PatientName, ds.PatientID, ds.StudyDate, ds.SeriesTime = "", "", "20240101", "120000"
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.SeriesNumber = "MR", "Philips Medical Systems", 4
    ds.SeriesDescription = "T1 3D"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.add_new((0x2005, 0x0010), "LO", "Philips MR Imaging DD 001")
    if top_level_scale is not None:
        ds.add_new((0x2005, 0x100E), "FL", top_level_scale)
    shared = Dataset()
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [1.0, 1.0], 2.0
    orientation.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for f in range(n):
        item, position, transform, private = Dataset(), Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [-2.0 * f, -10.0, 10.0]  # along the slice normal (-x)
        transform.RescaleSlope, transform.RescaleIntercept = slopes[f], intercept
        transform.RescaleType = "normalized"
        content = Dataset()
        content.StackID, content.InStackPositionNumber, content.TemporalPositionIndex = "1", f + 1, 1
        content.DimensionIndexValues = [1, f + 1]
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([position]), Sequence([transform])
        item.FrameContentSequence = Sequence([content])
        private.add_new((0x2005, 0x0010), "LO", "Philips MR Imaging DD 001")
        private.add_new((0x2005, 0x100E), "FL", scale_slopes[f])
        if private_rescale is not None:
            private.RescaleSlope, private.RescaleIntercept = private_rescale
        if real_world is not None:
            mapping = Dataset()
            mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept = real_world
            mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = 0, 4095
            item.RealWorldValueMappingSequence = Sequence([mapping])
        item.add_new((0x2005, 0x0014), "LO", "Philips MR Imaging DD 005")  # owns (2005,14xx)
        item.add_new((0x2005, 0x140F), "SQ", Sequence([private]))
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ENHANCED_MR, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def test_philips_per_frame_scale_slope_gives_precise_values(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4000, size=(3, 8, 6))
    scale = [2.5e-5, 2.5e-5, 5.0e-5]
    philips_enhanced(tmp_path / "enhanced.dcm", pixels, slope=1.8, intercept=0.0, scale_slopes=scale,
                     top_level_scale=1.0)  # a misleading top-level value: the frame's own wins
    volume = load_volume(tmp_path)
    assert volume.shape == (6, 8, 3)
    for f in range(3):
        # FP = (SV * RS + RI) / (RS * SS) = SV / SS here: ~1e5 x the display value SV * RS
        expected = pixels[f].T / scale[f]
        np.testing.assert_allclose(volume.array[:, :, f], expected, rtol=1e-5)


def _ge_epi(folder, *, sequence_name, user_data, ramp=False, implicit=False, temporal_positions=True):
    """2 slices x 4 volumes of a GE EPI (one file per image); volume v holds the value 100 * (v + 1)
    (``ramp``: plus row + 10 * column, so that a flip shows). ``implicit``: implicit VR, so that
    private elements are read back as raw bytes, as from real GE files; ``temporal_positions``:
    False leaves out TemporalPositionIdentifier."""
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    n = 0
    for volume in range(4):
        for k in range(2):
            pixels = np.full((4, 5), 100 * (volume + 1))
            if ramp:
                pixels = pixels + np.arange(4)[:, None] + 10 * np.arange(5)[None, :]
            ds = make_dataset(pixels, [0.0, 0.0, 3.0 * k], [1, 0, 0, 0, 1, 0], [2.0, 2.0],
                              study_uid=study, series_uid=series, instance=n + 1, description="rsfMRI AP PA",
                              Manufacturer="GE MEDICAL SYSTEMS")
            if temporal_positions:
                ds.TemporalPositionIdentifier = volume + 1
            ds.add_new((0x0019, 0x0010), "LO", "GEMS_ACQU_01")
            ds.add_new((0x0019, 0x109C), "LO", sequence_name)
            ds.add_new((0x0019, 0x10B3), "DS", user_data)  # user data 12, as GE writes it
            if implicit:
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            ds.save_as(folder / f"IM{n:03d}", enforce_file_format=True)
            n += 1


def test_ge_pepolar_forward_and_reverse_volumes_are_separate_stacks(tmp_path):
    _ge_epi(tmp_path / "fwd_rev", sequence_name="epi_pepolar", user_data=3)  # forward first
    stacks = {ref.label: ref for ref in scan(tmp_path / "fwd_rev").series}
    assert set(stacks) == {"pe_fwd", "pe_rev"}
    forward, reverse = stacks["pe_fwd"].load(), stacks["pe_rev"].load()
    assert forward.shape == reverse.shape == (5, 4, 2, 2)
    assert sorted(np.unique(forward.array)) == [100, 300]  # volumes 1 and 3
    assert sorted(np.unique(reverse.array)) == [200, 400]
    _ge_epi(tmp_path / "rev_fwd", sequence_name="epi_pepolar", user_data=2)  # reverse first
    stacks = {ref.label: ref.load() for ref in scan(tmp_path / "rev_fwd").series}
    assert sorted(np.unique(stacks["pe_rev"].array)) == [100, 300]


def test_other_ge_epi_stays_one_4d_stack(tmp_path):
    _ge_epi(tmp_path / "epi", sequence_name="epi2", user_data=3)
    (ref,) = scan(tmp_path / "epi").series
    assert ref.load().shape == (5, 4, 2, 4)
