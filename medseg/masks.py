"""Small mask operations shared by the stages."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean mask (all False if the mask is empty)."""
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel(order="K"), minlength=count + 1)[1:]  # far faster than ndimage.sum
    return labels == (int(np.argmax(sizes)) + 1)


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...]:
    """The slices of a non-empty mask's bounding box, widened by ``pad`` within the array (from
    per-axis projections: several times faster than ``np.nonzero`` on a whole volume)."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - pad, 0), int(hit[-1]) + 1 + pad))
    return tuple(box)


def fill_holes_per_plane(mask: np.ndarray, axis: int) -> np.ndarray:
    """Holes filled in every plane along ``axis`` (cavities that open to the outside in 3D but are
    enclosed in a plane; a hole enclosed in 3D is enclosed in each of its planes too). One
    labelling of the background inside the mask's bounding box, with a structure that connects
    within planes only; the components touching the box's sides stay background (the frame
    around the box in each plane is background that reaches the plane's border)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    box = bounding_box(mask)
    inner = mask[box]
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    centre = [1] * mask.ndim
    for end in (0, 2):  # no connection across planes
        centre[axis] = end
        structure[tuple(centre)] = False
    labels, count = ndimage.label(~inner, structure)
    edge = np.zeros(count + 1, bool)
    for side in range(mask.ndim):
        if side != axis:
            for end in (0, -1):
                edge[np.take(labels, end, axis=side)] = True
    edge[0] = False  # label 0: the mask itself
    filled = mask.copy()
    filled[box] = ~edge[labels]
    return filled


def _cross_step(mask: np.ndarray, grow: bool) -> np.ndarray:
    """One dilation (``grow``) or erosion by the face-connected cross, outside the array counting
    as background: ``ndimage.binary_dilation``/``binary_erosion`` with their default structure
    and ``border_value=0``, as OR/AND of shifted copies (several times faster than the generic
    scipy loop on 256 x 256 x 35 masks)."""
    out = mask.copy()
    for axis in range(mask.ndim):
        lower = [slice(None)] * mask.ndim
        upper = [slice(None)] * mask.ndim
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        lo, up = tuple(lower), tuple(upper)
        if grow:
            out[lo] |= mask[up]
            out[up] |= mask[lo]
        else:
            out[lo] &= mask[up]
            out[up] &= mask[lo]
            edge: list[slice | int] = [slice(None)] * mask.ndim
            for end in (0, -1):
                edge[axis] = end
                out[tuple(edge)] = False
    return out


def binary_closing(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``scipy.ndimage.binary_closing(mask, iterations=iterations)`` (face-connected cross,
    border 0): the same mask, computed inside the mask's bounding box widened by
    ``2 * iterations`` (beyond that the dilation is empty, as in the whole array)."""
    mask = np.asarray(mask, dtype=bool)
    closed = np.zeros_like(mask)
    if not mask.any() or iterations < 1:
        return mask.copy() if iterations < 1 else closed
    box = bounding_box(mask, pad=2 * iterations)
    part = mask[box]
    for _ in range(iterations):
        part = _cross_step(part, grow=True)
    for _ in range(iterations):
        part = _cross_step(part, grow=False)
    closed[box] = part
    return closed


def percentiles(array: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(array, q)`` (linear interpolation). For integer arrays of a small value
    range (the stored DICOM/NIfTI pixels) by counting values instead of partitioning: the same
    order statistics, about ten times faster on a 256 x 256 x 35 localizer."""
    array = np.asarray(array)
    if array.dtype.kind not in "iub" or array.size == 0:
        return np.percentile(array, q)
    low, high = int(array.min()), int(array.max())
    if high - low > 1 << 20:
        return np.percentile(array, q)
    counts = np.cumsum(np.bincount(array.ravel(order="K").astype(np.intp) - low, minlength=high - low + 1))
    position = np.asarray(q, dtype=np.float64) / 100.0 * (array.size - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, array.size - 1)
    # the value of order statistic k: the first value whose cumulative count exceeds k
    lower = np.searchsorted(counts, below, side="right") + low
    upper = np.searchsorted(counts, above, side="right") + low
    t = position - below
    difference = (upper - lower).astype(np.float64)
    # numpy's own interpolation (numpy.lib._function_base_impl._lerp), so the values match it
    return np.where(t >= 0.5, upper - difference * (1 - t), lower + difference * t)
