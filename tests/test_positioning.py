"""Localization angles, axial plan and CC measurements on masks with known geometry."""

import cv2
import numpy as np
import pytest

from medseg.geometry import Plane, physical_angle
from medseg.io import scan, write_dicom_series
from medseg.positioning.angles import NoCorpusCallosumError, localize
from medseg.positioning.morphometry import measure
from medseg.positioning.plan import plan_axial
from medseg.positioning.qc import render_qc
from medseg.synth.phantom import HeadPhantom, phantom_volume, sagittal_affine
from tests.conftest import data_path

# A sagittal display plane: x (columns) -> posterior, y (rows) -> inferior, 0.5 mm pixels.
PLANE = Plane(origin=np.array([0.0, -50.0, 50.0]), x_vec=np.array([0, 0.5, 0.0]),
              y_vec=np.array([0, 0, -0.5]))


def crescent(theta_deg: float, size: int = 240, supersample: int = 1) -> np.ndarray:
    """A CC-like arch whose subcallosal line and long axis are horizontal at theta = 0, rotated
    counter-clockwise on screen by theta (with anterior on the left: anterior end down).
    ``supersample`` > 1 returns the fraction of each pixel covered (a partial-volume image)."""
    n = size * supersample
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    dx, dy = (xx + 0.5) / supersample - 0.5 - size / 2, (yy + 0.5) / supersample - 0.5 - size / 2
    t = np.radians(theta_deg)
    u = np.cos(t) * dx - np.sin(t) * dy
    v = np.sin(t) * dx + np.cos(t) * dy
    outer = (u / 70) ** 2 + (v / 34) ** 2 <= 1
    inner = (u / 58) ** 2 + ((v - 6) / 22) ** 2 <= 1
    shape = outer & ~inner & (v <= 10)
    if supersample == 1:
        return shape
    return shape.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


@pytest.mark.parametrize("theta", [-30, -17.5, -5, 0, 8, 22, 30])
def test_synthetic_crescent_gives_exact_angles(theta):
    result = localize(crescent(theta), PLANE)
    # Counter-clockwise on screen with anterior on the left lowers the anterior end.
    assert result.box.angle_deg == pytest.approx(-theta, abs=0.3)
    assert result.line.angle_deg == pytest.approx(-theta, abs=0.3)
    assert result.final.angle_deg == pytest.approx(-theta, abs=0.3)
    assert result.consistent


def test_line_touches_the_inferior_edge_at_both_ends():
    mask = crescent(0)
    result = localize(mask, PLANE)
    (gx, gy), (sx, sy) = result.line_endpoints_px
    bottom = np.nonzero(mask.any(axis=1))[0].max()
    assert gy == pytest.approx(bottom + 0.5, abs=1.0) and sy == pytest.approx(bottom + 0.5, abs=1.0)
    assert gx < sx  # genu (anterior, left on screen) first


def test_a_noisy_pixel_does_not_tip_the_line():
    mask = crescent(10)
    clean = localize(mask, PLANE).line.angle_deg
    noisy = mask.copy()
    ys, xs = np.nonzero(mask)
    tip = np.argmax(ys + 0.2 * xs)  # a bottom boundary pixel near the splenium
    noisy[ys[tip] + 1, xs[tip]] = True
    assert localize(noisy, PLANE).line.angle_deg == pytest.approx(clean, abs=0.5)


def test_inconsistent_box_and_line_are_flagged():
    # Flat top, tilted underside: the minimum-area box lies along the top edge (0 deg), the
    # subcallosal line along the underside (about -14 deg).
    mask = np.zeros((240, 240), np.uint8)
    cv2.fillPoly(mask, [np.array([[40, 100], [200, 100], [190, 125], [50, 160]], np.int32)], 1)
    result = localize(mask > 0, PLANE, max_difference_deg=5)
    assert result.box.angle_deg == pytest.approx(0.0, abs=0.5)
    assert result.line.angle_deg == pytest.approx(-14.1, abs=0.5)
    assert result.box_line_difference_deg > 5 and not result.consistent
    assert localize(mask > 0, PLANE, max_difference_deg=20).consistent


def test_empty_mask_is_a_clear_error():
    with pytest.raises(NoCorpusCallosumError, match="empty"):
        localize(np.zeros((50, 50), bool), PLANE)
    with pytest.raises(NoCorpusCallosumError, match="too small"):
        tiny = np.zeros((50, 50), bool)
        tiny[10:12, 10:12] = True
        localize(tiny, PLANE)


def test_patient_coordinates_of_the_centre():
    result = localize(crescent(0), PLANE)
    x, y = result.final.center_px
    np.testing.assert_allclose(result.final.center_mm, PLANE.origin + x * PLANE.x_vec + y * PLANE.y_vec)


# Storage flips map pixel centres exactly; what remains is OpenCV's float32 geometry and the
# order-dependent Huber fit: a few hundredths of a degree.
SAME_ANGLE_DEG = 0.05


def test_flipped_storage_gives_the_same_physical_angle():
    mask = crescent(12)
    h, w = mask.shape
    base = localize(mask, PLANE).final.angle_deg
    # stored P->A instead of A->P (columns flipped): x_vec reversed, origin at the old last column
    flipped_cols = Plane(PLANE.origin + (w - 1) * PLANE.x_vec, -PLANE.x_vec, PLANE.y_vec)
    assert localize(mask[:, ::-1], flipped_cols).final.angle_deg == pytest.approx(base, abs=SAME_ANGLE_DEG)
    # rows flipped (inferior->superior)
    flipped_rows = Plane(PLANE.origin + (h - 1) * PLANE.y_vec, PLANE.x_vec, -PLANE.y_vec)
    assert localize(mask[::-1], flipped_rows).final.angle_deg == pytest.approx(base, abs=SAME_ANGLE_DEG)
    # transposed storage (rows along A-P)
    transposed = Plane(PLANE.origin, PLANE.y_vec, PLANE.x_vec)
    assert localize(mask.T, transposed).final.angle_deg == pytest.approx(base, abs=SAME_ANGLE_DEG)


@pytest.mark.parametrize("pitch", [-15.0, 0.0, 20.0])
def test_same_head_in_four_storage_orientations_through_dicom(tmp_path, pitch):
    """The phantom head written as DICOM with different IOPs (A->P / P->A columns, S->I / I->S
    rows, as head-first/feet-first and prone/supine scanners store it) gives one angle."""
    phantom = HeadPhantom(pitch_deg=pitch)
    reference = HeadPhantom(pitch_deg=0.0)
    angles = []
    for n, (flip_i, flip_j) in enumerate([(1, 1), (-1, 1), (1, -1), (-1, -1)]):
        affine = sagittal_affine((200, 200, 5), (1.0, 1.0, 3.0))
        flip = np.diag([flip_i, flip_j, 1.0, 1.0])
        flip[0, 3] = 199 if flip_i < 0 else 0
        flip[1, 3] = 199 if flip_j < 0 else 0
        affine = affine @ flip
        image, labels = phantom_volume(phantom, (200, 200, 5), affine, noise=0.0)
        write_dicom_series(labels, tmp_path / f"o{n}")
        loaded = scan(tmp_path / f"o{n}").series[0].load()
        mask = np.asarray(loaded.array[:, :, 2]).T == 7
        angles.append(localize(mask, Plane.from_volume_slice(loaded, 2)).final.angle_deg)
    grid = sagittal_affine((200, 200, 5), (1.0, 1.0, 3.0))
    _, ref = phantom_volume(reference, (200, 200, 5), grid, noise=0)
    base = localize(np.asarray(ref.array[:, :, 2]).T == 7, Plane.from_volume_slice(ref, 2)).final.angle_deg
    assert max(angles) - min(angles) < SAME_ANGLE_DEG
    assert angles[0] - base == pytest.approx(pitch, abs=1.0)


def test_rotation_equivariance_on_a_real_cc():
    """Rotating a real mid-sagittal CC (FreeSurfer label) by theta changes the angle by theta."""
    from medseg.segment.data import PlanePose, Subject

    subject = Subject.load(data_path("brain", "fs-training", "sub-02"))
    plane = subject.plane(PlanePose(), 192, 1.0)
    _, label = subject.sample(PlanePose(), 192, 1.0)
    base = localize(label, plane).final.angle_deg
    centre = tuple(float(v) for v in np.argwhere(label).mean(axis=0)[::-1])
    errors = []
    for theta in range(-30, 31, 5):
        matrix = cv2.getRotationMatrix2D(centre, theta, 1.0)
        rotated = cv2.warpAffine(label.astype(np.uint8), matrix, label.shape[::-1], flags=cv2.INTER_NEAREST)
        angle = localize(rotated > 0, plane).final.angle_deg
        errors.append(abs((angle - base) - (-theta)))  # anterior on the left: CCW lowers it
    assert max(errors) < 1.0


def test_axial_plan_orientation():
    plan = plan_axial(np.zeros(3), np.array([0.0, -np.cos(np.radians(10)), np.sin(np.radians(10))]),
                      np.array([1.0, 0.0, 0.0]))
    iop = np.array(plan.image_orientation_patient)
    np.testing.assert_allclose(iop[:3], [1, 0, 0], atol=1e-6)
    # columns run posterior along the plan: posterior and a little down
    np.testing.assert_allclose(iop[3:], [0, np.cos(np.radians(10)), -np.sin(np.radians(10))], atol=1e-6)
    assert plan.pitch_deg == pytest.approx(10.0)
    assert np.dot(plan.normal, [0, 0, 1]) > 0.98
    # a rolled mid-sagittal plane is corrected too
    rolled = plan_axial(np.zeros(3), np.array([0, -1.0, 0]), np.array([np.cos(0.1), 0, np.sin(0.1)]))
    assert rolled.roll_deg == pytest.approx(np.degrees(0.1), abs=1e-6)


def test_physical_angle_definition():
    assert physical_angle(np.array([0, -1.0, 0])) == pytest.approx(0)
    assert physical_angle(np.array([0, -1.0, 1.0])) == pytest.approx(45)
    assert physical_angle(np.array([0, 1.0, 1.0])) == pytest.approx(-45)  # same line, other sense


def test_measurements_of_a_known_bar():
    yy, xx = np.mgrid[0:200, 0:200]
    bar = (np.abs(xx - 100) < 50) & (np.abs(yy - 100) < 5)  # 99 x 9 px of 0.5 mm
    result = localize(bar, PLANE)
    m = measure(bar, PLANE, np.array(result.box.direction_px))
    assert m.area_mm2 == pytest.approx(99 * 9 * 0.25)
    assert m.midline_length_mm == pytest.approx(49.5, abs=1.0)
    assert np.median(m.thickness_mm) == pytest.approx(4.5, abs=0.3)
    assert len(m.thickness_mm) == 100
    assert sum(m.hofer_frahm_mm2.values()) == pytest.approx(m.area_mm2)
    assert m.hofer_frahm_mm2["I"] == pytest.approx(m.area_mm2 / 6, rel=0.1)
    assert m.witelson_mm2["splenium"] == pytest.approx(m.area_mm2 / 5, rel=0.1)


def test_real_cc_measurements_are_plausible():
    from medseg.segment.data import PlanePose, Subject

    subject = Subject.load(data_path("brain", "fs-training", "sub-04"))
    plane = subject.plane(PlanePose(), 192, 1.0)
    image, label = subject.sample(PlanePose(), 192, 1.0)
    result = localize(label, plane)
    m = measure(label, plane, np.array(result.box.direction_px))
    assert 400 < m.area_mm2 < 900  # adult mid-sagittal CC
    assert 60 < m.midline_length_mm < 110
    assert 2 < m.mean_thickness_mm < 10
    picture = render_qc(image, label, plane, result, title="sub-04")
    assert picture.ndim == 3 and picture.shape[2] == 3


@pytest.mark.parametrize("theta", [0.4, 1.0, 2.0, -1.5])
def test_subpixel_outline_from_the_probability_map(theta):
    """Small tilts: the probability map's 0.5 iso-line keeps what the pixel outline quantises."""
    probability = crescent(theta, supersample=4)  # partial-volume image, as a network outputs
    result = localize(probability > 0.5, PLANE, probability=probability)
    assert result.final.angle_deg == pytest.approx(-theta, abs=0.15)
    assert result.box.angle_deg == pytest.approx(-theta, abs=0.15)
