"""DICOM loading on synthetic series written with plain pydicom (geometry known exactly)."""

import numpy as np
import pytest

from medseg.errors import CorruptFileError, InconsistentSeriesError, MissingGeometryError, NoImagesError
from medseg.io import load_volume, scan
from tests.conftest import make_dataset, oblique_geometry, write_series


def test_oblique_shuffled_series_with_gaps(oblique_series):
    folder, truth, iop, ipps, pixel = oblique_series
    result = scan(folder)
    assert len(result.series) == 1 and not result.errors
    volume = result.series[0].load()
    assert volume.shape == truth.shape
    np.testing.assert_array_equal(volume.array, truth)
    # Every voxel centre sits where DICOM says: IPP + col*dx*row_cos + row*dy*col_cos.
    row_cos, col_cos = np.asarray(iop[:3]), np.asarray(iop[3:])
    for i, j, k in [(0, 0, 0), (19, 23, 8), (5, 11, 4)]:
        expected = ipps[k] + i * pixel[1] * row_cos + j * pixel[0] * col_cos
        np.testing.assert_allclose(volume.world_coordinates([[i, j, k]])[0], expected, atol=1e-4)
    # The slice step is measured from positions (2.5 mm), not SliceThickness (1 mm).
    assert volume.spacing[2] == pytest.approx(2.5, abs=1e-4)
    assert volume.meta.modality == "MR" and volume.meta.description == "test series"


def test_non_dicom_files_are_skipped_not_fatal(oblique_series):
    folder, truth, *_ = oblique_series
    (folder / "notes.txt").write_text("not an image")
    (folder / "random.bin").write_bytes(np.random.default_rng(1).bytes(5000))
    (folder / "DICOMDIR-like").write_bytes(b"\x00" * 200)
    result = scan(folder)
    assert len(result.series) == 1
    assert len(result.skipped) == 3
    np.testing.assert_array_equal(result.series[0].load().array, truth)


def test_truncated_file_is_reported_and_series_flagged(oblique_series):
    folder, *_ = oblique_series
    victim = sorted(folder.iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 300])
    result = scan(folder)
    assert [p for p, _ in result.errors] == [str(victim)]
    assert "truncated" in result.errors[0][1]
    (series,) = result.series
    assert not series.ok  # 8 of 9 slices: never loaded as if complete
    with pytest.raises((CorruptFileError, InconsistentSeriesError)):
        series.load()


@pytest.mark.parametrize("which", [0, 4, 8])
def test_a_damaged_end_or_middle_slice_never_loads_silently(oblique_series, which):
    folder, truth, iop, ipps, pixel = oblique_series
    # find the file holding slice `which` and cut it short
    import pydicom

    for path in folder.iterdir():
        if int(pydicom.dcmread(path, stop_before_pixels=True).InstanceNumber) == which + 1:
            path.write_bytes(path.read_bytes()[:-100])
    (series,) = scan(folder).series
    assert any("damaged" in p for p in series.problems)
    with pytest.raises(CorruptFileError, match="damaged"):
        series.load()


def test_missing_geometry_names_the_series(tmp_path):
    slices = [np.full((8, 8), k, np.int16) for k in range(3)]
    write_series(tmp_path / "s", slices, None, None, (1.0, 1.0), description="no geometry")
    (series,) = scan(tmp_path).series
    assert series.problems and "ImagePositionPatient" in series.problems[0]
    with pytest.raises(MissingGeometryError, match="no geometry"):
        series.load()


def test_missing_slice_is_an_error_not_a_silent_stretch(tmp_path):
    iop, ipps, pixel = oblique_geometry(n=6)
    slices = [np.full((24, 20), k, np.int16) for k in range(6)]
    del slices[3], ipps[3]
    write_series(tmp_path / "s", slices, ipps, iop, pixel)
    (series,) = scan(tmp_path).series
    with pytest.raises(InconsistentSeriesError, match="uneven slice spacing"):
        series.load()


def test_mixed_orientations_split_into_stacks(tmp_path):
    uid = "1.2.3.999"
    sag = (0, 1, 0, 0, 0, -1)
    ax = (1, 0, 0, 0, 1, 0)
    write_series(tmp_path / "a", [np.ones((16, 16), np.int16)] * 3,
                 [(x, -50.0, 50.0) for x in (-5.0, 0.0, 5.0)], sag, (1, 1), series_uid=uid,
                 study_uid="1.2.3.1")
    write_series(tmp_path / "b", [np.full((16, 16), 2, np.int16)] * 4,
                 [(-50.0, -50.0, z) for z in (0.0, 4.0, 8.0, 12.0)], ax, (1, 1), series_uid=uid,
                 study_uid="1.2.3.1")
    result = scan(tmp_path)
    assert len(result.studies) == 1
    stacks = {ref.label: ref for ref in result.series}
    assert set(stacks) == {"sag", "ax"}
    assert stacks["sag"].shape == (16, 16, 3) and stacks["ax"].shape == (16, 16, 4)
    assert stacks["sag"].load().spacing[2] == pytest.approx(5.0)
    assert len({ref.key for ref in result.series}) == 2


def test_repeated_positions_make_a_4d_volume_in_time_order(tmp_path):
    iop, ipps, pixel = oblique_geometry(n=4)
    slices, positions, times = [], [], []
    for t in range(3):
        for k in range(4):
            slices.append(np.full((24, 20), 10 * t + k, np.int16))
            positions.append(ipps[k])
            times.append(t + 1)
    write_series(tmp_path / "s", slices, positions, iop, pixel,
                 per_slice=lambda n: {"TemporalPositionIdentifier": times[n]})
    volume = scan(tmp_path).series[0].load()
    assert volume.shape == (20, 24, 4, 3)
    assert volume.array[0, 0, 2, 1] == 12 and volume.array[0, 0, 3, 2] == 23


def test_echoes_and_phase_are_separate_stacks_and_rescale_applies(tmp_path):
    iop, ipps, pixel = oblique_geometry(n=3)
    files = []
    for echo in (1, 2):
        for kind, image_type in (("M", ["ORIGINAL", "PRIMARY", "M", "FFE"]),
                                 ("P", ["ORIGINAL", "PRIMARY", "P", "FFE"])):
            files += write_series(tmp_path / f"{echo}{kind}", [np.full((24, 20), 100, np.int16)] * 3,
                                  ipps, iop, pixel, series_uid="1.2.3.77", study_uid="1.2.3.1",
                                  EchoNumbers=echo, ImageType=image_type, RescaleSlope="0.5",
                                  RescaleIntercept=str(-10 * echo))
    refs = {ref.label: ref for ref in scan(tmp_path).series}
    assert set(refs) == {"e1", "e1_ph", "e2", "e2_ph"}
    volume = refs["e2"].load()
    assert volume.array.dtype == np.float32
    assert float(volume.array[0, 0, 0]) == pytest.approx(100 * 0.5 - 20)


def test_several_studies_in_one_folder(tmp_path):
    iop, ipps, pixel = oblique_geometry(n=2)
    write_series(tmp_path / "x", [np.ones((24, 20), np.int16)] * 2, ipps, iop, pixel, study_uid="1.1")
    write_series(tmp_path / "y", [np.ones((24, 20), np.int16)] * 2, ipps, iop, pixel, study_uid="1.2")
    result = scan(tmp_path)
    assert sorted(s.uid for s in result.studies) == ["1.1", "1.2"]


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    assert scan(tmp_path).series == []
    with pytest.raises(NoImagesError):
        load_volume(tmp_path)
    with pytest.raises(NoImagesError):
        scan(tmp_path / "does-not-exist")


def test_dicom_without_preamble_is_read(tmp_path):
    iop, ipps, pixel = oblique_geometry(n=1)
    ds = make_dataset(np.full((24, 20), 7, np.int16), ipps[0], iop, pixel, study_uid="1.5",
                      series_uid="1.6")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"  # implicit VR, as ACR-NEMA-era files
    path = tmp_path / "raw"
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    (series,) = scan(tmp_path).series
    assert series.load().array[0, 0, 0] == 7


def test_undecodable_pixels_raise_a_clear_error(tmp_path):
    iop, ipps, pixel = oblique_geometry(n=1)
    ds = make_dataset(np.zeros((24, 20), np.int16), ipps[0], iop, pixel, study_uid="1.5",
                      series_uid="1.6")
    ds.PixelData = b"\x00" * 10  # shorter than Rows*Columns*2
    ds.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    result = scan(tmp_path)
    if result.series:  # header fine, damage found on decoding
        with pytest.raises(CorruptFileError, match="bad.dcm"):
            result.series[0].load()
    else:
        assert result.errors and "bad.dcm" in result.errors[0][0]


def test_scan_never_writes_into_the_input(oblique_series):
    folder, *_ = oblique_series
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    for ref in scan(folder).series:
        ref.load()
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
