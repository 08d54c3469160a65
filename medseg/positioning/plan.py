"""The planned axial-oblique slice stack, parallel to the final line.

The stack's slices contain the final line's direction (anterior-pointing, in the mid-sagittal
plane) and the left-right axis of the mid-sagittal plane (its normal). For a localizer that
normal is the localizer slice's normal; for a 3D volume it is the estimated mid-sagittal plane's,
so the plan corrects roll and yaw as well as pitch.

DICOM ImageOrientationPatient of the planned slices: row direction = towards patient left (the
mid-sagittal normal oriented +L), column direction = towards posterior along the plan; their cross
product (the slice normal) points superior, as for a standard head-first axial stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.geometry import ANTERIOR, LEFT, SUPERIOR, as_vec3


@dataclass(frozen=True)
class AxialPlan:
    center_mm: tuple[float, float, float]
    normal: tuple[float, float, float]  # unit, superior-pointing
    row_direction: tuple[float, float, float]  # unit, towards patient left
    column_direction: tuple[float, float, float]  # unit, towards posterior
    image_orientation_patient: tuple[float, ...]  # DICOM IOP (row, column)
    pitch_deg: float  # rotation about L-R from a true axial stack (+: anterior end up)
    roll_deg: float  # rotation about A-P (+: left side up)
    yaw_deg: float  # rotation about S-I (+: anterior turned to the left)
    midsagittal_normal: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def plan_axial(center_mm: np.ndarray, line_direction_lps: np.ndarray, midsagittal_normal: np.ndarray
               ) -> AxialPlan:
    """Axial-oblique stack through ``center_mm`` containing ``line_direction_lps`` and the
    mid-sagittal normal."""
    left = np.asarray(midsagittal_normal, dtype=np.float64)
    left = left / np.linalg.norm(left)
    if np.dot(left, LEFT) < 0:
        left = -left
    anterior = np.asarray(line_direction_lps, dtype=np.float64)
    anterior = anterior - np.dot(anterior, left) * left  # exactly within the mid-sagittal plane
    anterior /= np.linalg.norm(anterior)
    if np.dot(anterior, ANTERIOR) < 0:
        anterior = -anterior
    posterior = -anterior
    normal = np.cross(left, posterior)  # L x P = S
    pitch = float(np.degrees(np.arctan2(np.dot(anterior, SUPERIOR), np.dot(anterior, ANTERIOR))))
    roll = float(np.degrees(np.arctan2(np.dot(left, SUPERIOR), np.dot(left, LEFT))))
    yaw = float(np.degrees(np.arctan2(np.dot(anterior, LEFT), np.dot(anterior, ANTERIOR))))
    return AxialPlan(
        center_mm=as_vec3(center_mm),
        normal=as_vec3(normal),
        row_direction=as_vec3(left),
        column_direction=as_vec3(posterior),
        image_orientation_patient=tuple(round(float(v), 6) for v in (*left, *posterior)),
        pitch_deg=pitch, roll_deg=roll, yaw_deg=yaw,
        midsagittal_normal=as_vec3(left),
    )
