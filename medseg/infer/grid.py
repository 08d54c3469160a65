"""The network grid: how a plane through a volume is laid out for the 2D networks.

The convention shared by training (:mod:`medseg.segment.data`) and inference (CC segmentation,
skull stripping), recorded in each ``model.json`` (``input.orientation``, ``input.spacing_mm``,
``input.crop``): rows run superior->inferior, columns anterior->posterior, square pixels; the
crop is centred on the head's mean foreground column, ``top_to_centre_mm`` below the top of the
head in the plane.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from medseg.geometry import LEFT, Plane
from medseg.volume import Volume

HeadSampler = Callable[[np.ndarray], np.ndarray]  # LPS points (..., 3) -> head foreground (...)


def network_frame(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_dir = inferior, col_dir = posterior, normal = +L) within a sagittal-ish plane, as in
    training (:class:`medseg.segment.data.Subject`)."""
    normal = normal / np.linalg.norm(normal)
    if np.dot(normal, LEFT) < 0:
        normal = -normal
    posterior = np.array([0.0, 1.0, 0.0]) - np.dot([0.0, 1.0, 0.0], normal) * normal
    posterior /= np.linalg.norm(posterior)
    inferior = np.cross(posterior, normal)
    return inferior, posterior, normal


class VolumeLookup:
    """Sampling a volume (and its head mask) at LPS points.

    Points on a slice plane land on integer slice indices only up to rounding, and scipy's
    constant mode returns the fill value for anything beyond the first or last index: indices
    within 1e-4 of an integer are snapped to it, and a single-slice image counts as a slab of its
    slice thickness. Points outside the image take ``outside`` (the contract's
    ``input.normalization.outside_image_value``)."""

    def __init__(self, volume: Volume, values: np.ndarray, head: np.ndarray, *, outside: float = 0.0):
        self.inverse = np.linalg.inv(volume.affine)
        self.values, self.head, self.outside = values, head.astype(np.uint8), float(outside)
        self.single = [n == 1 for n in values.shape[:3]] if values.ndim >= 3 else [False] * 3

    def _index(self, points: np.ndarray) -> np.ndarray:
        flat = points.reshape(-1, 3)
        index = (flat @ self.inverse[:3, :3].T + self.inverse[:3, 3]).T
        nearest = np.round(index)
        index = np.where(np.abs(index - nearest) < 1e-4, nearest, index)
        for axis, single in enumerate(self.single):
            if single:
                index[axis] = np.where(np.abs(index[axis]) <= 0.5, 0.0, index[axis])
        return index

    def image(self, points: np.ndarray) -> np.ndarray:
        out = ndimage.map_coordinates(self.values, self._index(points), order=1, mode="constant",
                                      cval=self.outside)
        return out.reshape(points.shape[:-1])

    def mask(self, points: np.ndarray) -> np.ndarray:
        out = ndimage.map_coordinates(self.head, self._index(points), order=0, mode="constant", cval=0)
        return out.reshape(points.shape[:-1]) > 0


def crop_offset(mask: np.ndarray, steps: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, *,
                top_to_centre_mm: float) -> np.ndarray:
    """Offset (LPS) of the crop centre from the grid centre, for a head mask on that grid."""
    if mask.sum() < 20:
        return np.zeros(3)
    rows = np.nonzero(mask.any(axis=1))[0]
    top = steps[rows.min()]
    col = float(np.mean(steps[np.nonzero(mask)[1]]))
    return (top + top_to_centre_mm) * row_dir + col * col_dir


def crop_centre_from_sampler(sample_mask: HeadSampler, centre: np.ndarray, row_dir: np.ndarray,
                             col_dir: np.ndarray, *, top_to_centre_mm: float, spacing: float = 2.5,
                             extent_mm: float = 320.0) -> np.ndarray:
    """Where to centre the network crop on a plane: the head's centroid column, and
    ``top_to_centre_mm`` below the top of the head (the head seen on a ``spacing`` grid of
    ``extent_mm`` around ``centre``). ``sample_mask(points)`` returns the head foreground at LPS
    points."""
    n = int(extent_mm / spacing)
    steps = (np.arange(n) - (n - 1) / 2) * spacing
    grid = (centre[None, None, :] + steps[:, None, None] * row_dir[None, None, :]
            + steps[None, :, None] * col_dir[None, None, :])
    mask = sample_mask(grid)
    return centre + crop_offset(mask, steps, row_dir, col_dir, top_to_centre_mm=top_to_centre_mm)


def grid_plane(crop: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, size: int, spacing: float) -> Plane:
    """The ``size`` x ``size`` network plane of ``spacing`` mm pixels centred on ``crop``."""
    half = (size - 1) / 2.0
    return Plane(origin=crop - half * spacing * (row_dir + col_dir), x_vec=col_dir * spacing,
                 y_vec=row_dir * spacing)


def plane_grid(plane: Plane, size: int) -> np.ndarray:
    """LPS points (size x size x 3) of a network plane's pixels."""
    index = np.arange(size, dtype=np.float64)
    return (plane.origin[None, None, :] + index[:, None, None] * plane.y_vec[None, None, :]
            + index[None, :, None] * plane.x_vec[None, None, :])
