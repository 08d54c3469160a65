"""Small mask operations shared by the stages."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean mask (all False if the mask is empty)."""
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]  # far faster than ndimage.sum
    return labels == (int(np.argmax(sizes)) + 1)


def fill_holes_per_plane(mask: np.ndarray, axis: int) -> np.ndarray:
    """Holes filled in 3D and then in every plane along ``axis`` (cavities that open to the
    outside in 3D but are enclosed in a plane). Works inside the mask's bounding box only."""
    mask = ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))
    if not mask.any():
        return mask
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
    inner = mask[box]
    for k in range(inner.shape[axis]):
        index = [slice(None)] * 3
        index[axis] = k
        inner[tuple(index)] = ndimage.binary_fill_holes(inner[tuple(index)])
    mask[box] = inner
    return mask
