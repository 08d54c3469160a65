"""Which array axis of an image runs left-right, across which axis its slices lie, and which
anatomical plane (sagittal, coronal, axial) those slices are.

The one place that answers these questions for every stage (routing, CC segmentation, N4, head
mask, skull stripping, spine stations, stack labels). Nothing assumes that the slices lie across
the third array axis: DICOM stacks do, but a NIfTI file may store a sagittal localizer with
left-right as its first axis (``fslreorient2std``, nibabel's ``as_closest_canonical`` and
SimpleITK's defaults all write it so), or second, flipped or not.

Directions are DICOM LPS (see :mod:`medseg.volume`); a plane is named by its normal: ``"sag"``
(normal left-right), ``"cor"`` (anterior-posterior), ``"ax"`` (head-foot).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

PlaneName = Literal["sag", "cor", "ax"]
PLANE_NAMES: tuple[PlaneName, PlaneName, PlaneName] = ("sag", "cor", "ax")  # by the LPS axis of the normal

# A slice axis whose voxels are this much longer than both in-plane ones is the slice axis, whatever
# its array position (thick localizer slices 4-10 mm vs 0.5-1.2 mm pixels; a rectangular-pixel
# DICOM plane such as 0.9 x 1.1 mm never reaches it).
THICK_RATIO = 1.5
# Otherwise an axis with at most half as many voxels as both others is the slice axis
# (a 20-slice contiguous stack of 256 x 256).
FEW_RATIO = 0.5


def axis_directions(affine: np.ndarray) -> np.ndarray:
    """3x3 matrix whose columns are the unit LPS directions of array axes 0, 1, 2."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    return linear / np.linalg.norm(linear, axis=0)


def left_right_axis(affine: np.ndarray) -> tuple[int, float]:
    """(array axis closest to left-right, |cosine| of its angle to left-right)."""
    cosines = np.abs(axis_directions(affine)[0])
    axis = int(np.argmax(cosines))
    return axis, float(cosines[axis])


def head_foot_axis(affine: np.ndarray) -> int:
    """The array axis closest to the patient's head-foot (LPS z) axis."""
    return int(np.argmax(np.abs(axis_directions(affine)[2])))


def stack_axis(affine: np.ndarray, shape: Sequence[int]) -> int | None:
    """The array axis across which the image's slices clearly lie, or None (a near-isotropic
    3D volume): the axis whose voxels are clearly the longest (:data:`THICK_RATIO`), else the
    axis with clearly the fewest voxels (:data:`FEW_RATIO`)."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    counts = np.asarray(shape[:3], dtype=np.float64)
    thick = int(np.argmax(spacing))
    if all(spacing[thick] >= THICK_RATIO * spacing[a] for a in range(3) if a != thick):
        return thick
    few = int(np.argmin(counts))
    if all(counts[few] <= FEW_RATIO * counts[a] for a in range(3) if a != few):
        return few
    return None


def slice_axis(affine: np.ndarray, shape: Sequence[int]) -> int:
    """The array axis across which the image's slices lie: :func:`stack_axis`, else axis 2 (the
    DICOM stack convention; for a near-isotropic 3D volume any answer serves)."""
    axis = stack_axis(affine, shape)
    return 2 if axis is None else axis


def section_axis(affine: np.ndarray, shape: Sequence[int]) -> int:
    """The axis to work plane by plane along, independent of how the array is stored: the slice
    axis of a stack, else (a 3D volume) the axis closest to left-right (sagittal planes)."""
    axis = stack_axis(affine, shape)
    return left_right_axis(affine)[0] if axis is None else axis


def slice_normal(affine: np.ndarray, axis: int) -> np.ndarray:
    """Unit LPS normal of the planes of constant index along ``axis`` (the cross product of the two
    other axes, so a sheared stack's true slice normal), pointing the way ``axis`` increases."""
    directions = axis_directions(affine)
    a, b = (i for i in range(3) if i != axis)
    normal = np.cross(directions[:, a], directions[:, b])
    normal /= np.linalg.norm(normal)
    return normal if np.dot(normal, directions[:, axis]) >= 0 else -normal


def plane_of_normal(normal: Sequence[float] | np.ndarray) -> PlaneName:
    """``"sag"``, ``"cor"`` or ``"ax"``: the patient axis closest to a plane's normal."""
    return PLANE_NAMES[int(np.argmax(np.abs(np.asarray(normal, dtype=np.float64))))]


def plane_of_iop(iop: Sequence[float] | None) -> str:
    """The plane of a DICOM ImageOrientationPatient (row, column cosines), or ``"unknown"``."""
    if iop is None:
        return "unknown"
    return plane_of_normal(np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:6], float)))


def plane_name(affine: np.ndarray, shape: Sequence[int]) -> PlaneName:
    """The plane of an image's slices (across :func:`slice_axis`), in any axis order."""
    return plane_of_normal(slice_normal(affine, slice_axis(affine, shape)))


def is_sagittal_stack(affine: np.ndarray, shape: Sequence[int]) -> bool:
    """The image's slices are sagittal (their normal is closest to left-right)."""
    return plane_name(affine, shape) == "sag"


def slices_last_order(affine: np.ndarray, shape: Sequence[int]) -> tuple[int, int, int]:
    """The axis order that puts the slice axis last (the other two keep their order)."""
    axis = slice_axis(affine, shape)
    first, second = (a for a in range(3) if a != axis)
    return first, second, axis
