"""A 2D image plane placed in patient space, and the physical angle convention.

Shared by every stage that samples or measures on a plane (skull stripping, CC segmentation and
its training data, positioning), so it sits below them all.

**Angle convention (used everywhere in medseg):** a line in the mid-sagittal plane is
given the direction that points to the patient's anterior; its angle is measured in the sagittal
plane from the patient's anterior axis, positive when the anterior end is superior (nose-up
pitch). Patient coordinates are DICOM LPS: anterior = (0, -1, 0), superior = (0, 0, 1).
Because the angle is computed from patient-space directions, it does not depend on how the image
is stored (row/column order, flips, head-first/feet-first, prone/supine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medseg.volume import Volume

ANTERIOR = np.array([0.0, -1.0, 0.0])
SUPERIOR = np.array([0.0, 0.0, 1.0])
LEFT = np.array([1.0, 0.0, 0.0])


def as_vec3(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """A 3-vector as a tuple of Python floats (ValueError if it has not exactly 3 entries)."""
    x, y, z = (float(v) for v in values)
    return x, y, z


@dataclass(frozen=True)
class Plane:
    """Pixel (x = column, y = row) -> LPS mm: ``origin + x * x_vec + y * y_vec``.

    ``x_vec`` and ``y_vec`` carry the pixel spacing (their norms are the column and row spacing).
    """

    origin: np.ndarray
    x_vec: np.ndarray
    y_vec: np.ndarray

    @classmethod
    def from_volume_slice(cls, volume: Volume, k: int) -> "Plane":
        """Slice ``k`` of a Volume viewed as an image with x = array axis 0, y = array axis 1
        (the DICOM column/row convention of medseg Volumes: ``array[:, :, k].T`` is the image)."""
        a = volume.affine
        return cls(origin=a[:3, :3] @ np.array([0.0, 0.0, k]) + a[:3, 3], x_vec=a[:3, 0].copy(),
                   y_vec=a[:3, 1].copy())

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.x_vec, self.y_vec)
        return n / np.linalg.norm(n)

    @property
    def pixel_area_mm2(self) -> float:
        return float(np.linalg.norm(np.cross(self.x_vec, self.y_vec)))

    def to_patient(self, xy: np.ndarray) -> np.ndarray:
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        return self.origin + xy[:, :1] * self.x_vec + xy[:, 1:2] * self.y_vec

    def direction_to_patient(self, dxy: np.ndarray) -> np.ndarray:
        """Unit LPS direction of an image direction (dx, dy)."""
        d = dxy[0] * self.x_vec + dxy[1] * self.y_vec
        return d / np.linalg.norm(d)

    def image_direction(self, patient_direction: np.ndarray) -> np.ndarray:
        """Unit image direction (dx, dy) closest to an LPS direction (projected into the plane)."""
        basis = np.column_stack([self.x_vec, self.y_vec])
        dxy, *_ = np.linalg.lstsq(basis, patient_direction, rcond=None)
        return dxy / np.linalg.norm(dxy)


def anterior_pointing(plane: Plane, dxy: np.ndarray) -> np.ndarray:
    """The image direction ``dxy`` or its opposite, whichever points to the patient's anterior."""
    return dxy if np.dot(plane.direction_to_patient(dxy), ANTERIOR) >= 0 else -dxy


def physical_angle(direction_lps: np.ndarray) -> float:
    """Angle (deg) of an LPS direction in the sagittal plane: from anterior, + when superior.

    The direction is oriented to point anterior first, and its left-right component is ignored
    (projection onto the sagittal plane).
    """
    d = np.asarray(direction_lps, dtype=np.float64)
    if np.dot(d, ANTERIOR) < 0:
        d = -d
    return float(np.degrees(np.arctan2(np.dot(d, SUPERIOR), np.dot(d, ANTERIOR))))


def image_angle(dxy: np.ndarray) -> float:
    """Angle (deg) of an image direction as displayed (x right, y down): counter-clockwise on
    screen from the +x axis."""
    return float(np.degrees(np.arctan2(-dxy[1], dxy[0])))
