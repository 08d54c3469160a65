"""Registration refinement in the overlap of two stations (SimpleITK), safe by construction.

Table-position errors shift a station by a few mm. A translation (optionally rigid) is found by
maximising normalised correlation between the neighbour (already placed) and the station over
their overlap only; the correlation metric ignores the stations' different intensity scaling.

A found correction is only a proposal (:func:`check_correction`): it is applied when it stays
within the table's plausible error and raises the overlap's global NCC by more than the metric's
noise, measured on the spot as the largest NCC change that a shift of ``NOISE_SHIFT_MM`` (well
below the 0.5 mm that matters) along any axis causes at the DICOM position. A correct geometry
cannot gain that much from any correction, so it is kept; a correction that lowers the NCC is
rejected and reported.

The check then judges each axis's part of an accepted correction on its own
(:func:`supported_translation`): a part whose removal costs the overlap NCC no more than a
``NOISE_SHIFT_MM`` shift along that axis costs at the corrected position is not supported by the
overlap and is dropped (that axis keeps its DICOM position). The whole-overlap test alone lets a
correction through whose gain comes from one axis while another axis's part is wrong: a station
of thick sagittal slices corrected 2.35 mm left-right against a true 0.63 mm, accepted because
the head-foot and anterior-posterior parts raised the NCC.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import numpy as np
import SimpleITK as sitk

from medseg.volume import Volume


@dataclass(frozen=True)
class Registration:
    """Correction to apply to the moving station: its voxels move by ``translation_mm`` (LPS) and
    rotate by ``rotation`` about ``center`` (identity when rigid search is off)."""

    translation_mm: np.ndarray
    rotation: np.ndarray
    center: np.ndarray
    metric: float
    accepted: bool
    reason: str = ""

    def as_matrix(self) -> np.ndarray:
        """4x4 world->world map that moves the station's content into place."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.rotation
        matrix[:3, 3] = self.center - self.rotation @ self.center + self.translation_mm
        return matrix


def register_overlap(fixed: Volume, fixed_mask: np.ndarray, moving: Volume, *,
                     max_shift_mm: float = 10.0, rigid: bool = False,
                     metric: str = "local") -> Registration:
    """Find the world transform that best maps ``moving`` onto ``fixed`` inside ``fixed_mask``.

    ``fixed`` is the neighbour resampled on the overlap grid; ``moving`` the station on its own
    grid. The result is rejected (identity kept) if the shift exceeds ``max_shift_mm``.
    """
    fixed_image = sitk.Cast(fixed.to_sitk(), sitk.sitkFloat32)
    moving_image = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    mask = fixed.with_array(fixed_mask.astype(np.uint8)).to_sitk()
    center = fixed.world_coordinates([(np.array(fixed.spatial_shape) - 1) / 2.0])[0]
    initial: sitk.Transform
    if rigid:
        initial = sitk.Euler3DTransform()
        initial.SetCenter(tuple(center))
    else:
        initial = sitk.TranslationTransform(3)

    method = sitk.ImageRegistrationMethod()
    if metric == "local":
        method.SetMetricAsANTSNeighborhoodCorrelation(2)
    elif metric == "mi":
        method.SetMetricAsMattesMutualInformation(32)
    else:
        method.SetMetricAsCorrelation()
    method.SetMetricFixedMask(mask)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=200, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(True)
    method.SetInitialTransform(initial, inPlace=False)
    transform = method.Execute(fixed_image, moving_image)
    metric_value = float(method.GetMetricValue())

    # SimpleITK's transform maps fixed points to moving points: x_moving = T(x_fixed).
    # The station must move by the inverse to land on the neighbour.
    inner = transform.GetNthTransform(0) if isinstance(transform, sitk.CompositeTransform) else transform
    if rigid:
        euler = sitk.Euler3DTransform(inner)
        matrix = np.asarray(euler.GetMatrix()).reshape(3, 3)
        offset = np.asarray(euler.GetTranslation())
        rot_inv = matrix.T
        forward_center = np.asarray(euler.GetCenter())
        # x_m = R (x_f - c) + c + t  =>  x_f = R^T (x_m - c - t) + c
        translation = -rot_inv @ offset
        rotation, rot_center = rot_inv, forward_center
    else:
        translation = -np.asarray(inner.GetOffset())
        rotation, rot_center = np.eye(3), center
    shift = float(np.linalg.norm(translation))
    if not np.isfinite(shift) or shift > max_shift_mm:
        return Registration(np.zeros(3), np.eye(3), rot_center, metric_value, False,
                            f"shift {shift:.1f} mm exceeds the {max_shift_mm:.1f} mm bound")
    return Registration(translation, rotation, rot_center, metric_value, True)


NOISE_SHIFT_MM = 0.2  # the perturbation that measures the overlap NCC's noise
MIN_NCC_GAIN = 1e-3  # and a floor under it (flat, featureless overlaps)


def ncc_noise(ncc_at: Callable[[np.ndarray], float], *, shift_mm: float = NOISE_SHIFT_MM) -> float:
    """The largest change of the overlap NCC (``ncc_at(translation_mm)``) under a +-``shift_mm``
    shift along each LPS axis from the DICOM position: what interpolation and a sub-threshold
    misplacement alone can do to the metric."""
    at = np.zeros(3)
    base = ncc_at(at)
    return max(_step_change(ncc_at, at, base, axis, shift_mm) for axis in range(3))


def _step_change(ncc_at: Callable[[np.ndarray], float], at: np.ndarray, base: float, axis: int,
                 shift_mm: float) -> float:
    """The larger NCC change of a +-``shift_mm`` step along ``axis`` from ``at`` (NCC ``base``)."""
    step = np.eye(3)[axis] * shift_mm
    return float(max(abs(ncc_at(at + sign * step) - base) for sign in (-1.0, 1.0)))


class Check(NamedTuple):
    """A check's verdict on a correction. ``within_noise``: the correction gains no more than the
    metric's noise, so the DICOM position is as good as any correction (no second opinion)."""

    accepted: bool
    reason: str
    within_noise: bool = False


def check_correction(ncc_before: float, ncc_after: float, noise: float, shift_mm: float, *,
                     max_shift_mm: float, min_gain: float = MIN_NCC_GAIN) -> Check:
    """A correction is applied only when it is within the table's plausible error and raises the
    overlap NCC by more than its noise (and ``min_gain``)."""
    margin = max(noise, min_gain)
    if not np.isfinite(shift_mm) or shift_mm > max_shift_mm:
        return Check(False, f"shift {shift_mm:.1f} mm exceeds the {max_shift_mm:.1f} mm table error bound")
    if not np.isfinite(ncc_after) or ncc_after < ncc_before:
        return Check(False, f"makes the overlap NCC worse ({ncc_before:.4f} -> {ncc_after:.4f})")
    if ncc_after - ncc_before <= margin:
        return Check(False, f"NCC gain {ncc_after - ncc_before:.4f} within the metric's noise {margin:.4f}: "
                            "the DICOM geometry is kept", within_noise=True)
    return Check(True, f"NCC {ncc_before:.4f} -> {ncc_after:.4f} (noise {margin:.4f})")


AXIS_NAMES = ("left-right", "anterior-posterior", "head-foot")  # LPS axes 0, 1, 2


def supported_translation(ncc_at: Callable[[np.ndarray], float], translation_mm: np.ndarray, *,
                          shift_mm: float = NOISE_SHIFT_MM) -> tuple[np.ndarray, float, list[str]]:
    """The part of ``translation_mm`` that the overlap supports, axis by axis, its NCC, and a
    note per axis dropped.

    ``ncc_at(t)`` is the overlap NCC with the station corrected by ``t``. At the current
    translation, an axis's part is unsupported when setting it to 0 lowers the NCC by no more
    than a +-``shift_mm`` step along that axis changes it there (the metric's noise at the
    corrected position, per axis: at an optimum the NCC is flat, so this is small; it is not the
    DICOM position's margin, which on a misplaced station is the NCC's slope). The most clearly
    unsupported part is dropped first and the rest judged again, until every part left pays its
    way. A part whose removal *raises* the NCC is always dropped: the overlap contradicts it.
    """
    t = np.asarray(translation_mm, dtype=np.float64).copy()
    notes: list[str] = []
    while True:
        base = ncc_at(t)
        excess: dict[int, tuple[float, float, float]] = {}
        for axis in (int(a) for a in np.nonzero(t)[0]):
            without = t.copy()
            without[axis] = 0.0
            loss = base - ncc_at(without)
            noise = _step_change(ncc_at, t, base, axis, shift_mm)
            if loss <= noise:
                excess[axis] = (loss - noise, loss, noise)
        if not excess:
            return t, base, notes
        drop = min(excess, key=lambda a: excess[a][0])
        _, loss, noise = excess[drop]
        notes.append(f"{AXIS_NAMES[drop]} part {t[drop]:+.2f} mm dropped: removing it changes the "
                     f"overlap NCC by {-loss:+.4f}, within the {noise:.4f} a {shift_mm} mm step does there")
        t[drop] = 0.0


def with_translation(registration: Registration, translation_mm: np.ndarray) -> Registration:
    """``registration`` with its translation replaced (rotation and centre kept)."""
    return replace(registration, translation_mm=np.asarray(translation_mm, dtype=np.float64))


def translated(volume: Volume, translation_mm: np.ndarray) -> Volume:
    """The station with its geometry shifted by ``translation_mm`` (LPS; pixels untouched)."""
    affine = np.asarray(volume.affine).copy()
    affine[:3, 3] += translation_mm
    return Volume(volume.array, affine, volume.meta)


def moved(volume: Volume, registration: Registration) -> Volume:
    """The station with its correction applied to its geometry (pixels untouched)."""
    return Volume(volume.array, registration.as_matrix() @ volume.affine, volume.meta)
