"""Mid-sagittal plane of a 3D head by bilateral symmetry: the plane across which the head
correlates best with its own reflection.

The plane has three parameters: its normal's turn about the superior-inferior axis (yaw) and
about the anterior-posterior axis (roll), and its offset from the head's centre along the
normal. The correlation of the masked, smoothed head with its reflection is maximised over
them, first by a coarse search (yaw and roll in SEARCH_STEP_DEG steps up to SEARCH_DEG, through
the centre, on SEARCH_SPACING_MM voxels), then by Nelder-Mead from the best coarse plane on
``working_spacing_mm`` voxels.

Written here, on SimpleITK's resampling, rather than as SimpleITK's rigid registration of the
head to its mirror image (six parameters, of which a reflection needs three), which medseg used
before: from the unturned mirror, gradient descent stayed near it for a head turned 5-20 deg
one way (yaw), so that a FreeSurfer subject turned -8 deg got a plane 7.7 deg off and -20 deg
one 22 deg off; started from the coarse search, it still left the plane 2-6 deg off on turned
copies of the same head (measured while the images were still subsampled with SimpleITK's
Shrink, whose own grid error is described at :func:`_shrunk`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy.optimize import minimize

from medseg.masks import bounding_box
from medseg.volume import Volume

SEARCH_DEG = 20.0  # the coarse search's range of yaw and roll of the plane's normal
SEARCH_STEP_DEG = 4.0
SEARCH_SPACING_MM = 8.0
# Nelder-Mead's first steps and its tolerances (degrees for the turns, mm for the offset)
REFINE_STEP = (3.0, 3.0, 2.0)
REFINE_TOLERANCE = 0.1
REFINE_RESTARTS = 2
RESTART_GAIN = 1e-5
SMOOTHING = 0.5  # Gaussian sigma / voxel size


def plane_turn(normal: np.ndarray) -> tuple[float, float]:
    """(yaw, roll) in degrees of a plane's normal (the inverse of the search's parametrisation).
    A plane found at or beyond SEARCH_DEG lies outside the coarse search, and may be a local
    optimum: the segmenter flags it."""
    n = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
    return float(np.degrees(np.arctan2(n[1], n[0]))), float(np.degrees(np.arcsin(np.clip(n[2], -1.0, 1.0))))


def _normal(yaw_deg: float, roll_deg: float) -> np.ndarray:
    """LPS unit normal turned from +L by yaw (towards +P) and roll (towards +S)."""
    yaw, roll = np.radians(yaw_deg), np.radians(roll_deg)
    return np.array([np.cos(yaw) * np.cos(roll), np.sin(yaw) * np.cos(roll), np.sin(roll)])


class _Symmetry:
    """The correlation of one image with its reflection across planes (near the centre)."""

    def __init__(self, image: sitk.Image, centre: np.ndarray):
        self.image = image
        self.centre = np.asarray(centre, dtype=np.float64)
        self.values = sitk.GetArrayFromImage(image).astype(np.float64).ravel()
        self.positive = self.values > 0  # the head's voxels (the image is 0 outside the mask)
        self.transform = sitk.AffineTransform(3)

    def correlation(self, yaw_deg: float, roll_deg: float, offset_mm: float = 0.0) -> float:
        normal = _normal(yaw_deg, roll_deg)
        # reflection across the plane through centre + offset * normal
        self.transform.SetCenter(tuple(self.centre + offset_mm * normal))
        self.transform.SetMatrix(tuple((np.eye(3) - 2.0 * np.outer(normal, normal)).ravel()))
        reflected = sitk.Resample(self.image, self.image, self.transform, sitk.sitkLinear, 0.0)
        moving = sitk.GetArrayViewFromImage(reflected).astype(np.float64).ravel()
        inside = self.positive | (moving > 0)
        if inside.sum() < 10:
            return -1.0
        return float(np.corrcoef(self.values[inside], moving[inside])[0, 1])


def _shrunk(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``image`` averaged in blocks to about ``spacing_mm`` voxels, then smoothed. BinShrink, not
    Shrink: SimpleITK's Shrink misplaces its output grid for a turned image direction (0.4 mm per
    axis for a head turned 8 deg, measured), which made the plane depend on the head's turn."""
    shrink = [max(1, int(round(spacing_mm / s))) for s in image.GetSpacing()]
    return sitk.SmoothingRecursiveGaussian(sitk.BinShrink(image, shrink), spacing_mm * SMOOTHING)


def midsagittal_plane(volume: Volume, head_mask: np.ndarray, *, working_spacing_mm: float = 4.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit normal towards +L) of the plane of bilateral symmetry, in LPS mm.

    The search runs on the image reoriented to RAS (axes permuted and flipped, no
    interpolation), so the plane does not depend on how the array is stored."""
    volume, head_mask = (volume.reorient("RAS"),
                         np.asarray(volume.with_array(np.asarray(head_mask, np.uint8)).reorient("RAS").array) > 0)
    image = volume.with_array(np.asarray(volume.array, dtype=np.float32) * head_mask).to_sitk()
    image = image[bounding_box(head_mask, pad=2)]  # the head only: the air around it is zeros
    centre = volume.world_coordinates(np.argwhere(head_mask).mean(axis=0)[None])[0]  # affine: mean commutes

    coarse = _Symmetry(_shrunk(image, SEARCH_SPACING_MM), centre)
    steps = np.arange(-SEARCH_DEG, SEARCH_DEG + 1e-9, SEARCH_STEP_DEG)
    scores = {(yaw, roll): coarse.correlation(yaw, roll) for yaw in steps for roll in steps}
    start = max(scores, key=lambda k: scores[k])

    x = np.array([start[0], start[1], 0.0])
    # Nelder-Mead from the coarse plane. It can stall on the ridge where yaw and offset trade
    # off, so it is restarted from where it stopped while that still improves the correlation by
    # RESTART_GAIN (at most REFINE_RESTARTS times).
    fine = _Symmetry(_shrunk(image, working_spacing_mm), centre)
    best = -np.inf
    for _ in range(1 + REFINE_RESTARTS):
        simplex = np.array([x] * 4)
        for k in range(3):
            simplex[k + 1, k] += REFINE_STEP[k]
        found = minimize(lambda p: -fine.correlation(*p), x, method="Nelder-Mead",
                         options={"initial_simplex": simplex, "xatol": REFINE_TOLERANCE, "fatol": 2e-6,
                                  "maxiter": 200})
        if -found.fun <= best + RESTART_GAIN:
            break
        x, best = found.x, -found.fun
    yaw, roll, offset = x
    normal = _normal(yaw, roll)
    return centre + offset * normal, normal
