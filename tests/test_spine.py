"""Whole-spine composing on stations with known truth."""

import json

import numpy as np
import pytest
from pydicom.uid import generate_uid
from scipy import ndimage

from medseg.cli import main
from medseg.errors import InputError
from medseg.io import read_nifti, scan, write_dicom_series
from medseg.resample import resample_to_grid
from medseg.spine import StitchOptions, compose, extract_rotated_roi, find_station_sets
from medseg.synth.stations import StationSpec, make_stations
from medseg.volume import Volume, VolumeMeta
from tests.conftest import data_path


@pytest.fixture(scope="module")
def source():
    """A smooth textured 'long spine' volume: 40 x 40 mm x 300 mm (LAS, 1.5 x 1.5 x 2 mm)."""
    rng = np.random.default_rng(5)
    array = ndimage.gaussian_filter(rng.normal(size=(28, 28, 150)), 2.0)
    array = (array - array.min()) / np.ptp(array) * 1000 + 100
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [20.0, -20.0, -150.0]
    return Volume(array.astype(np.float32), affine, VolumeMeta(modality="MR", description="T2"))


def specs(errors=((0, 0, 0), (0.4, -0.8, 2.6), (-0.6, 0.5, -3.1)), gains=(1.0, 1.5, 0.7)):
    return [StationSpec(148, 40, 1.2, 2.0, gains[0], 0.0, errors[0]),
            StationSpec(60, -60, 1.5, 2.5, gains[1], 0.0, errors[1]),
            StationSpec(-40, -148, 1.0, 2.0, gains[2], 0.0, errors[2])]


def truth_on(volume, source):
    return np.asarray(resample_to_grid(source, volume.spatial_shape, volume.affine).array)


def interior(volume, source, margin=4):
    """Composite voxels at least ``margin`` source voxels inside the source (the synthetic source
    has no air background, so its hard edge would dominate any score)."""
    mask = np.zeros(source.spatial_shape, np.uint8)
    mask[margin:-margin, margin:-margin, margin:-margin] = 1
    out = resample_to_grid(source.with_array(mask).as_label(), volume.spatial_shape, volume.affine)
    return np.asarray(out.array) > 0


def test_registration_recovers_table_errors_in_any_order(source):
    truth = make_stations(source, specs())
    shuffled = [truth.stations[i] for i in (2, 0, 1)]
    result = compose(shuffled, StitchOptions(backend="sitk", max_shift_mm=6))
    for station, expected in zip(result.stations, truth.expected_correction_mm):
        assert station.registration in ("reference", "accepted")
        np.testing.assert_allclose(station.correction_mm, expected, atol=0.5)
    # Gains bring each station back to the reference's scale (stations: 1.0, 1.5, 0.7).
    assert [s.gain for s in result.stations] == pytest.approx([1.0, 1 / 1.5, 1 / 0.7], rel=0.03)
    composite = np.asarray(result.volume.array)
    expected = truth_on(result.volume, source)
    covered = (composite > 0) & interior(result.volume, source)
    correlation = np.corrcoef(composite[covered], expected[covered])[0, 1]
    assert correlation > 0.99
    assert not result.gaps
    # registration raises the overlap correlation of every moved station
    assert all(s.ncc_after > s.ncc_before + 0.1 for s in result.stations[1:])


def test_without_registration_the_table_error_stays(source):
    truth = make_stations(source, specs())
    registered = compose(truth.stations, StitchOptions(backend="sitk"))
    unregistered = compose(truth.stations, StitchOptions(register=False, backend="sitk"))
    assert all(s.correction_mm == [0.0, 0.0, 0.0] for s in unregistered.stations)

    def error(result):
        composite = np.asarray(result.volume.array)
        expected = truth_on(result.volume, source)
        covered = (composite > 0) & interior(result.volume, source)
        return np.mean(np.abs(composite[covered] - expected[covered]))

    assert error(unregistered) > 2 * error(registered)


def test_reference_station_is_configurable(source):
    truth = make_stations(source, specs())
    result = compose(truth.stations, StitchOptions(reference="foot", backend="sitk"))
    assert result.reference_index == 2
    assert result.stations[2].correction_mm == [0.0, 0.0, 0.0]
    # station 0 moves by its error relative to the foot station's
    expected = np.subtract(specs()[0].table_error_mm, specs()[2].table_error_mm)
    np.testing.assert_allclose(result.stations[0].correction_mm, expected, atol=0.5)


def test_single_station_is_returned_unchanged(source):
    station = make_stations(source, specs()[:1]).stations[0]
    result = compose([station])
    assert result.volume is station


def test_non_overlapping_stations_leave_a_flagged_gap(source):
    far = [StationSpec(148, 60, 1.5, 2.0), StationSpec(30, -60, 1.5, 2.0)]
    result = compose(make_stations(source, far).stations, StitchOptions(backend="sitk"))
    assert len(result.gaps) == 1 and result.gaps[0]["length_mm"] > 20
    assert "not registered" in result.stations[1].registration


def test_mixed_orientations_are_rejected(source):
    station = make_stations(source, specs()[:1]).stations[0]
    # left-right and anterior-posterior exchanged: the thick slices now run anterior-posterior
    coronal = Volume(station.array, np.array(
        [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]) @ station.affine, station.meta)
    with pytest.raises(InputError, match="mix orientations"):
        compose([station, coronal])


def test_torch_backend_matches_simpleitk(source):
    truth = make_stations(source, specs())
    a = compose(truth.stations, StitchOptions(backend="sitk", register=False))
    b = compose(truth.stations, StitchOptions(backend="torch", device="cpu", register=False))
    assert b.backend == "torch:cpu"
    np.testing.assert_allclose(b.volume.array, a.volume.array, atol=0.05)


def test_multiband_blend_is_seamless(source):
    truth = make_stations(source, specs())
    result = compose(truth.stations, StitchOptions(blend="multiband", backend="sitk"))
    composite = np.asarray(result.volume.array)
    expected = truth_on(result.volume, source)
    covered = (composite > 0) & interior(result.volume, source)
    assert np.corrcoef(composite[covered], expected[covered])[0, 1] > 0.99


def test_rotated_roi_has_true_geometry(source):
    roi = extract_rotated_roi(source, center_mm=(0.0, 0.0, 0.0), size_mm=(20, 30), angle_deg=25)
    assert roi.shape[:2] == (13, 20)  # 20 / 1.5 and 30 / 1.5 voxels
    centre = roi.world_coordinates([(np.array(roi.spatial_shape) - 1) / 2])[0]
    np.testing.assert_allclose(centre[:2], [0.0, 0.0], atol=1e-6)
    # The first ROI axis is the volume's first axis rotated by 25 deg towards its second.
    cos = np.dot(roi.direction[:, 0], source.direction[:, 0])
    assert np.degrees(np.arccos(cos)) == pytest.approx(25.0, abs=1e-6)
    # Values: each ROI voxel equals the source interpolated at the ROI voxel's world point.
    from scipy.ndimage import map_coordinates

    idx = np.array([[3, 4, 10], [10, 15, 60], [6, 9, 75]])
    src_idx = source.voxel_coordinates(roi.world_coordinates(idx))
    expected = map_coordinates(np.asarray(source.array, np.float64), src_idx.T, order=1)
    np.testing.assert_allclose(roi.array[tuple(idx.T)], expected, rtol=1e-4)


def _write_study(source, folder, extra_axial=True):
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid()}
    truth = make_stations(source, specs())
    for number, station in zip((12, 10, 11), truth.stations):
        write_dicom_series(station.with_array(station.array, dicom=study), folder / f"s{number}",
                           series_description=f"t2_tse_sag_{number - 9}", series_number=number)
    if extra_axial:
        axial = Volume(np.ones((10, 10, 5), np.int16), np.eye(4), VolumeMeta(modality="MR"))
        write_dicom_series(axial.with_array(axial.array, dicom=study), folder / "ax",
                           series_description="t2_tse_tra", series_number=20)
    return truth


def test_station_detection_orders_head_to_foot(source, tmp_path):
    _write_study(source, tmp_path)
    sets = find_station_sets(scan(tmp_path).series)
    assert len(sets) == 1
    assert [r.series_number for r in sets[0]] == [12, 10, 11]  # written head, middle, foot


def test_stitch_cli_writes_nifti_dicom_png_json(source, tmp_path, capsys):
    _write_study(source, tmp_path / "in")
    out = tmp_path / "out"
    assert main(["stitch", str(tmp_path / "in"), "-o", str(out), "-q", "--device", "cpu"]) == 0
    report = json.loads((out / "stitch.json").read_text())
    assert len(report["stations"]) == 3 and report["schema"] == "medseg.stitch/1"
    assert (out / "preview.png").stat().st_size > 1000
    nifti = read_nifti(out / "composite.nii.gz")
    (dicom,) = scan(out / "composite_dicom").series
    back = dicom.load()
    np.testing.assert_allclose(back.affine, nifti.affine, atol=1e-3)
    assert back.shape == nifti.shape


def test_stitch_cli_without_a_set_fails_clearly(tmp_path, capsys):
    axial = Volume(np.ones((10, 10, 5), np.int16), np.eye(4), VolumeMeta(modality="MR"))
    write_dicom_series(axial, tmp_path / "ax")
    assert main(["stitch", str(tmp_path), "-o", str(tmp_path / "out"), "-q"]) == 2


def test_real_pam50_stations_align_within_half_a_millimetre():
    path = data_path("spine", "sct-testing", "template", "template", "PAM50_small_t2.nii.gz")
    source = read_nifti(path)
    spec = [StationSpec(270, 60, 0.9, 2.0, 1.0, 0.2, (0, 0, 0), 0.01),
            StationSpec(90, -110, 1.1, 2.2, 1.6, 0.25, (0.5, 1.5, -3.2), 0.01),
            StationSpec(-80, -270, 1.0, 2.0, 0.7, 0.2, (-0.8, -1.0, 4.1), 0.01)]
    truth = make_stations(source, spec)
    result = compose(truth.stations, StitchOptions(backend="sitk"))
    for station, expected in zip(result.stations, truth.expected_correction_mm):
        assert abs(station.correction_mm[2] - expected[2]) < 0.5


def test_intensities_are_compared_at_one_point_spread():
    """The station resampled onto the other's grid is blurred by the interpolation; the other
    gets the same blur before the two are compared: none where the grids coincide, the
    interpolation's variance (t (1 - t) h**2, here t = 0.5 along one axis) where they do not."""
    from medseg.spine.grid import match_point_spread

    rng = np.random.default_rng(0)
    own = rng.random((20, 30, 10)).astype(np.float32)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_array_equal(match_point_spread(own, affine, Volume(own * 2, affine.copy())), own)
    shifted = affine.copy()
    shifted[1, 3] += 1.0  # half a voxel along the 2 mm axis
    blurred = match_point_spread(own, affine, Volume(own, shifted))
    expected = ndimage.gaussian_filter(own, [0.0, np.sqrt(0.25 * 2.0 ** 2) / 2.0, 0.0], mode="nearest")
    np.testing.assert_allclose(blurred, expected, atol=1e-6)


def test_four_perfect_pam50_stations_keep_one_gain():
    """Four stations of the real PAM50 T2 with different spacings and nothing else wrong (gain
    1, no bias, exact geometry): their cores stay within 2.5 % of one another after intensity
    matching (1.018 measured). Compared without matching point spreads, the resampled station of
    each overlap read darker and the cores drifted apart (1.031 on these stations)."""
    path = data_path("spine", "sct-testing", "template", "template", "PAM50_small_t2.nii.gz")
    source = read_nifti(path)
    spacings = [(0.9, 2.0), (1.1, 2.2), (1.0, 1.8), (0.8, 2.4)]
    tops = [270.0, 145.0, 20.0, -105.0]
    spec = [StationSpec(top, top - 165.0, *spacing) for top, spacing in zip(tops, spacings)]
    result = compose(make_stations(source, spec).stations, StitchOptions(backend="sitk", register=False))
    ratios = _core_ratios(result, _clean_stations(source, spec))
    assert max(ratios) / min(ratios) < 1.025, ratios


@pytest.fixture(scope="module")
def lumbar():
    """A real sagittal lumbar T2 (1 mm assumed: the .mat stores no spacing), in LPS."""
    import scipy.io

    image = scipy.io.loadmat(data_path("spine", "lumbar-t2-vb1", "02.mat"))["I"].astype(np.float32)
    array = np.transpose(image, (1, 0, 2))  # (A->P, S->I, slices)
    # the central 32 slices and 2 mm pixels: registration time grows with the overlap's voxels
    mid = array.shape[2] // 2
    array = ndimage.zoom(array[:, :, mid - 16:mid + 16], (0.5, 0.5, 1.0), order=1)
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([[0, 2, 0], [0, 0, -2], [1, 0, 0]]).astype(np.float64)
    affine[:3, 3] = [-array.shape[2] / 2, -array.shape[0], array.shape[1]]
    return Volume(array, affine, VolumeMeta(modality="MR", description="lumbar T2"))


def lumbar_specs(source, errors, gains=(0.8, 1.0, 1.3)):
    top = source.world_coordinates([[0, 0, 0]])[0][2]
    bottom = source.world_coordinates([[0, source.shape[1] - 1, 0]])[0][2]
    size, overlap = (top - bottom + 2 * 40) / 3, 40
    return [StationSpec(top - i * (size - overlap), top - i * (size - overlap) - size, (1.8, 2.2, 2.0)[i],
                        2.0, gains[i], 0.2, errors[i], 0.01) for i in range(3)]


def true_corrections(made):
    """The true correction of a station of ``made`` (make_stations), looked up by its position:
    what a perfect registration of that station would propose."""
    by_position = {tuple(np.round(s.affine[:3, 3], 3)): np.asarray(e)
                   for s, e in zip(made.stations, made.expected_correction_mm)}
    return lambda station: by_position[tuple(np.round(station.affine[:3, 3], 3))]


def test_exact_geometry_on_a_real_lumbar_t2_is_left_alone(lumbar):
    """Stations whose DICOM geometry is exact: no correction may be applied, whatever the
    registration proposes; the overlap NCC is never made worse."""
    truth = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0)] * 3))
    result = compose(truth.stations, StitchOptions(backend="sitk"))
    for station in result.stations[1:]:
        assert station.correction_mm == [0.0, 0.0, 0.0], (station.registration, station.proposed_correction_mm)
        assert station.registration.startswith("rejected")
        assert station.ncc_after == station.ncc_before


def test_known_table_errors_of_both_signs_on_a_real_lumbar_t2(lumbar):
    truth = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0), (0, 1.5, -2.0), (0, -1.0, 1.5)]))
    result = compose(truth.stations, StitchOptions(backend="sitk"))
    for station, expected in zip(result.stations[1:], truth.expected_correction_mm[1:]):
        assert station.registration == "accepted", station.registration
        np.testing.assert_allclose(station.correction_mm, expected, atol=0.5)
        assert station.ncc_after > station.ncc_before + station.ncc_noise


def test_a_correction_that_lowers_the_overlap_ncc_is_rejected(lumbar, monkeypatch):
    """A registration that proposes a wrong 5 mm shift (as a metric's false optimum would) is
    rejected and reported; the station keeps its exact DICOM position."""
    import importlib

    from medseg.spine.register import Registration

    compose_module = importlib.import_module("medseg.spine.compose")

    def wrong(fixed, mask, moving, **kwargs):
        return Registration(np.array([0.0, 5.0, 1.0]), np.eye(3), np.zeros(3), 0.0, True)

    monkeypatch.setattr(compose_module, "register_overlap", wrong)
    truth = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0)] * 3))
    result = compose(truth.stations, StitchOptions(backend="sitk"))
    for station in result.stations[1:]:
        assert station.correction_mm == [0.0, 0.0, 0.0]
        assert "worse" in station.registration and station.ncc_registered < station.ncc_before


def test_a_wrong_axis_part_of_an_accepted_correction_is_dropped(lumbar, monkeypatch):
    """The registration proposes each station's true correction plus a wrong 1 mm left-right
    part (the through-slice axis of these 2 mm sagittal slices). The whole correction raises the
    overlap NCC and passes the whole-overlap check; the per-axis check drops the left-right part
    and keeps the true anterior-posterior and head-foot parts."""
    import importlib

    from medseg.spine.register import Registration

    compose_module = importlib.import_module("medseg.spine.compose")
    truth = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0), (0, 1.5, -2.0), (0, -1.0, 1.5)]))
    true_correction = true_corrections(truth)

    def wrong_left_right(fixed, mask, moving, **kwargs):
        correction = true_correction(moving) + np.array([1.0, 0.0, 0.0])
        return Registration(correction, np.eye(3), np.zeros(3), 0.0, True)

    monkeypatch.setattr(compose_module, "register_overlap", wrong_left_right)
    result = compose(truth.stations, StitchOptions(backend="sitk"))
    for station, correction in zip(result.stations[1:], truth.expected_correction_mm[1:]):
        assert station.registration == "accepted", station.registration
        assert any(note.startswith("left-right") for note in station.dropped_axes), station.dropped_axes
        np.testing.assert_allclose(station.correction_mm, correction, atol=1e-6)
        assert station.ncc_after > station.ncc_before + station.ncc_noise


def test_a_second_opinion_is_sought_unless_the_refusal_is_noise(lumbar, monkeypatch):
    """A proposal that lowers the overlap NCC gets a second opinion from global correlation; one
    whose gain is within the metric's noise does not (the DICOM position is as good as any
    correction), and neither is applied."""
    import importlib

    from medseg.spine.register import Registration

    compose_module = importlib.import_module("medseg.spine.compose")
    calls: list[str] = []

    def proposing(correction):
        def register(fixed, mask, moving, *, metric, **kwargs):
            calls.append(metric)
            return Registration(np.asarray(correction(moving), float), np.eye(3), np.zeros(3), 0.0, True)
        return register

    exact = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0)] * 3))
    monkeypatch.setattr(compose_module, "register_overlap", proposing(lambda moving: [0.0, 5.0, 1.0]))
    result = compose(exact.stations, StitchOptions(backend="sitk"))
    assert calls == ["local", "global"] * 2
    assert all("worse" in s.registration and s.correction_mm == [0.0, 0.0, 0.0] for s in result.stations[1:])

    # a 0.1 mm head-foot table error, proposed exactly: too small a gain to tell from noise
    small = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0), (0, 0, 0.1), (0, 0, -0.1)]))
    calls.clear()
    monkeypatch.setattr(compose_module, "register_overlap", proposing(true_corrections(small)))
    result = compose(small.stations, StitchOptions(backend="sitk"))
    assert calls == ["local"] * 2
    for station in result.stations[1:]:
        assert "within the metric's noise" in station.registration, station.registration
        assert station.correction_mm == [0.0, 0.0, 0.0]


def test_the_report_describes_the_last_proposal_only(lumbar, monkeypatch):
    """Local correlation proposes a shift that lowers the NCC; global correlation's proposal is
    out of bounds. The station keeps its DICOM position and its report holds the second
    proposal's verdict, with no NCC figures left from the first."""
    import importlib

    from medseg.spine.register import Registration

    compose_module = importlib.import_module("medseg.spine.compose")

    def register(fixed, mask, moving, *, metric, **kwargs):
        if metric == "local":
            return Registration(np.array([0.0, 5.0, 1.0]), np.eye(3), np.zeros(3), 0.0, True)
        return Registration(np.zeros(3), np.eye(3), np.zeros(3), 0.0, False, "shift 9.0 mm exceeds the 8.0 mm bound")

    monkeypatch.setattr(compose_module, "register_overlap", register)
    exact = make_stations(lumbar, lumbar_specs(lumbar, [(0, 0, 0)] * 3))
    for station in compose(exact.stations, StitchOptions(backend="sitk")).stations[1:]:
        assert station.registration_metric == "global" and station.registration.startswith("rejected: shift")
        assert station.ncc_registered is None and station.ncc_noise is None
        assert station.correction_mm == [0.0, 0.0, 0.0] and station.ncc_after == station.ncc_before

def _quadratic_ncc(optimum, curvature):
    optimum, curvature = np.asarray(optimum, float), np.asarray(curvature, float)
    return lambda t: float(0.99 - np.sum(curvature * (np.asarray(t) - optimum) ** 2))


def test_supported_translation_keeps_every_part_the_overlap_pays_for():
    from medseg.spine.register import supported_translation

    ncc_at = _quadratic_ncc([0.6, -1.4, 3.0], [0.002, 0.02, 0.02])
    kept, _, dropped = supported_translation(ncc_at, np.array([0.6, -1.4, 3.0]))
    np.testing.assert_array_equal(kept, [0.6, -1.4, 3.0])
    assert dropped == []


def test_supported_translation_drops_a_contradicted_or_uninformed_part():
    from medseg.spine.register import supported_translation

    # left-right proposed 2.35 mm where the overlap's optimum is 0.6 mm: removing it raises the NCC
    kept, _, dropped = supported_translation(_quadratic_ncc([0.6, -1.4, -0.5], [0.002, 0.02, 0.02]),
                                          np.array([2.35, -1.4, -0.5]))
    np.testing.assert_array_equal(kept, [0.0, -1.4, -0.5])
    assert len(dropped) == 1 and dropped[0].startswith("left-right part +2.35 mm")
    # an axis the overlap says nothing about (a flat NCC along it) keeps its DICOM position
    kept, _, dropped = supported_translation(_quadratic_ncc([5.0, -1.4, 2.0], [0.0, 0.02, 0.02]),
                                          np.array([1.8, -1.4, 2.0]))
    np.testing.assert_array_equal(kept, [0.0, -1.4, 2.0])
    # a sub-step part at a true optimum is not worth its noise: 0.1 mm costs less than a 0.2 mm step
    kept, _, _ = supported_translation(_quadratic_ncc([0.1, -1.4, 2.0], [0.02, 0.02, 0.02]),
                                    np.array([0.1, -1.4, 2.0]))
    np.testing.assert_array_equal(kept, [0.0, -1.4, 2.0])


def test_gain_profiles_are_recovered_from_overlap_ratios():
    """Three stations with known log-quadratic fields (both signs of curvature): the joint fit on
    the overlaps' log ratios gives each station the inverse field, the reference's centre fixed."""
    from medseg.spine.field import OverlapRows, StationProfile, fit_profiles, mismatch, profile_is_better

    extents = [(60.0, 200.0), (-60.0, 80.0), (-200.0, -40.0)]
    truth = [StationProfile(0.0, 0.0, -0.2, 130.0, 70.0), StationProfile(np.log(1.6), 0.0, 0.15, 10.0, 70.0),
             StationProfile(np.log(0.7), 0.0, -0.25, -120.0, 80.0)]  # the acquired fields
    rows = []
    for upper, lower in ((0, 1), (1, 2)):
        z = np.linspace(max(extents[upper][0], extents[lower][0]), min(extents[upper][1], extents[lower][1]), 40)
        ratio = truth[upper].log_multiplier(z) - truth[lower].log_multiplier(z)
        rows.append(OverlapRows(upper, lower, z, ratio, np.ones_like(z)))
    fitted = fit_profiles(rows, extents, reference=0)
    for profile, acquired in zip(fitted, truth):
        assert profile.log_gain == pytest.approx(-acquired.log_gain, abs=0.01)
        assert profile.curvature == pytest.approx(-acquired.curvature, abs=0.01)
        assert abs(profile.slope) < 0.01
    assert all(mismatch(r, fitted) < 1e-3 for r in rows)
    assert profile_is_better([0.05, 0.05], [mismatch(r, fitted) for r in rows], fitted)[0]
    # noise-level mismatches: one gain per station stays
    assert not profile_is_better([0.004, 0.004], [0.003, 0.003], fitted)[0]


def test_a_parabolic_field_is_recovered_in_the_rational_form():
    """Stations acquired with fields quadratic in intensity, g * (1 + c * u**2) (c of both signs):
    the rational form fits them exactly and is the one kept."""
    from medseg.spine.field import OverlapRows, fit_profiles, mismatch

    extents = [(60.0, 200.0), (-60.0, 80.0), (-200.0, -40.0)]
    gains, curvatures = [1.0, 1.6, 0.7], [-0.2, 0.25, -0.15]

    def log_field(k, z):
        lo, hi = extents[k]
        u = (z - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        return np.log(gains[k]) + np.log(1 + curvatures[k] * u ** 2)

    rows = []
    for upper, lower in ((0, 1), (1, 2)):
        z = np.linspace(max(extents[upper][0], extents[lower][0]), min(extents[upper][1], extents[lower][1]), 40)
        rows.append(OverlapRows(upper, lower, z, log_field(upper, z) - log_field(lower, z), np.ones_like(z)))
    fitted = fit_profiles(rows, extents, reference=0)
    assert {p.form for p in fitted} == {"rational"}
    for profile, gain, curvature in zip(fitted, gains, curvatures):
        assert np.exp(profile.log_gain) == pytest.approx(1 / gain, rel=0.01)
        assert profile.curvature == pytest.approx(curvature, abs=0.01)
    assert all(mismatch(r, fitted) < 1e-3 for r in rows)


def _clean_stations(source, specs_):
    """Each station's anatomy as it samples it (no gain, bias, noise or table error)."""
    return make_stations(source, [StationSpec(s.superior_mm, s.inferior_mm, s.in_plane_mm, s.slice_mm)
                                  for s in specs_]).stations


def _core_ratios(result, clean):
    """Per station: median composite / its resolution-matched truth on anatomy in the station's
    core (middle half, head-foot)."""
    from medseg.spine.compose import head_foot_axis
    from medseg.spine.grid import coverage_and_ramp, resample_station

    composite = result.volume
    data = np.asarray(composite.array)
    z = composite.world_coordinates(np.stack(np.meshgrid(
        [0], np.arange(composite.shape[1]), [0], indexing="ij"), -1).reshape(-1, 3))[:, 2]
    ratios = []
    for (lo, hi), station in zip([s.head_foot_extent_mm for s in result.stations], clean):
        truth = resample_station(station, composite.spatial_shape, composite.affine)
        inside = coverage_and_ramp(station, composite.spatial_shape, composite.affine, head_foot_axis(station))[0]
        core = ((z > lo + 0.25 * (hi - lo)) & (z < hi - 0.25 * (hi - lo)))[None, :, None]
        mask = inside & core & (truth > 0.2 * np.percentile(truth[inside], 99.9))
        ratios.append(float(np.median(data[mask] / truth[mask])))
    return ratios


def test_known_gain_and_bias_of_both_signs_on_a_real_lumbar_t2(lumbar):
    """Exact geometry, gains 0.8/1.0/1.3 and coil-like biases darker (+) and brighter (-) towards
    the station edges: no position correction is applied; the gain profiles bring the stations'
    cores within the evaluation's 5 % of one another, where one gain per station leaves them
    over 15 % apart."""
    base = lumbar_specs(lumbar, [(0, 0, 0)] * 3)
    specs_ = [StationSpec(s.superior_mm, s.inferior_mm, s.in_plane_mm, s.slice_mm, s.gain, bias,
                          s.table_error_mm, s.noise) for s, bias in zip(base, (0.25, -0.2, 0.2))]
    truth = make_stations(lumbar, specs_)
    clean = _clean_stations(lumbar, specs_)
    result = compose(truth.stations, StitchOptions(backend="sitk"))
    for station in result.stations[1:]:
        assert station.correction_mm == [0.0, 0.0, 0.0], (station.registration, station.proposed_correction_mm)
    assert result.intensity["applied"] == "profile", result.intensity
    # the correction brightens the edges of a station that was darker there, and darkens them
    # where it was brighter
    for station, spec in zip(result.stations, specs_):
        assert (station.intensity_profile["edge_gain"] > 1) == (spec.bias > 0), station.intensity_profile
    ratios = _core_ratios(result, clean)
    assert max(ratios) / min(ratios) < 1.05, ratios
    constant = compose(truth.stations, StitchOptions(backend="sitk", register=False, intensity="constant"))
    constant_ratios = _core_ratios(constant, clean)
    assert max(constant_ratios) / min(constant_ratios) > 1.15, constant_ratios
    report = result.report()
    for overlap in report["overlaps"]:
        mismatch = overlap["intensity_mismatch"]
        assert mismatch["applied"] < 0.5 * mismatch["constant_gains"] < mismatch["as_acquired"]
    json.dumps(report)  # JSON-ready


def test_stations_without_gain_or_bias_keep_constant_gains(lumbar):
    """Exact geometry and no intensity difference between stations: no correction of position
    or intensity profile is applied, and the gains stay 1."""
    base = lumbar_specs(lumbar, [(0, 0, 0)] * 3, gains=(1.0, 1.0, 1.0))
    specs_ = [StationSpec(s.superior_mm, s.inferior_mm, s.in_plane_mm, s.slice_mm, 1.0, 0.0,
                          s.table_error_mm, s.noise) for s in base]
    result = compose(make_stations(lumbar, specs_).stations, StitchOptions(backend="sitk"))
    assert result.intensity["applied"] == "constant gains", result.intensity
    for station in result.stations:
        assert station.correction_mm == [0.0, 0.0, 0.0]
        assert station.intensity_profile is None
        assert station.gain == pytest.approx(1.0, abs=0.01)


def test_a_profile_needs_enough_overlap_positions():
    from medseg.spine.field import StationProfile, profile_is_better

    flat = [StationProfile()] * 2
    assert profile_is_better([0.05], [0.001], flat, [20])[0]
    use, reason = profile_is_better([0.05], [0.001], flat, [5])
    assert not use and "too few" in reason
