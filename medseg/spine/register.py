"""Registration refinement in the overlap of two stations (SimpleITK).

Table-position errors shift a station by a few mm. A translation (optionally rigid) is found by
maximising normalised correlation between the neighbour (already placed) and the station over
their overlap only; the correlation metric ignores the stations' different intensity scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    metric = float(method.GetMetricValue())

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
        return Registration(np.zeros(3), np.eye(3), rot_center, metric, False,
                            f"shift {shift:.1f} mm exceeds the {max_shift_mm:.1f} mm bound")
    return Registration(translation, rotation, rot_center, metric, True)


def moved(volume: Volume, registration: Registration) -> Volume:
    """The station with its correction applied to its geometry (pixels untouched)."""
    return Volume(volume.array, registration.as_matrix() @ volume.affine, volume.meta)
