"""Foreground masks and the one intensity normalisation the networks use.

Normalisation is computed on the head foreground of the *whole series* (never per slice: a
per-slice percentile makes pure-noise slices outside the head look like tissue).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medseg.errors import InputError
from medseg.volume import Volume

NORMALIZATION = {
    "method": "percentile",
    "lower_percentile": 1.0,
    "upper_percentile": 99.0,
    "region": "head foreground of the whole series (Otsu threshold, largest component, holes filled)",
    "output": "(x - p_lower) / (p_upper - p_lower), not clipped",
}


def foreground_mask(volume: Volume) -> np.ndarray:
    """Head/body foreground: Otsu threshold (SimpleITK), largest connected component, holes
    filled slice by slice.

    Raises:
        InputError: the image has no foreground (constant or empty).
    """
    array = np.asarray(volume.array, dtype=np.float32)
    if array.ndim == 4:
        array = array[..., 0]
    if not np.isfinite(array).all() or np.ptp(array) <= 0:
        raise InputError(f"{volume.meta.description or 'image'}: no foreground (constant image)")
    image = sitk.GetImageFromArray(array)
    mask = sitk.GetArrayFromImage(sitk.OtsuThreshold(image, 0, 1)).astype(bool)
    labels, count = ndimage.label(mask)
    if count == 0:
        raise InputError(f"{volume.meta.description or 'image'}: no foreground found")
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


def normalize_intensity(volume: Volume, mask: np.ndarray | None = None) -> Volume:
    """Percentile scaling inside ``mask`` (default: :func:`foreground_mask`), as in NORMALIZATION."""
    if mask is None:
        mask = foreground_mask(volume)
    values = np.asarray(volume.array, dtype=np.float32)
    inside = values[..., 0][mask] if values.ndim == 4 else values[mask]
    if inside.size < 10:
        raise InputError(f"{volume.meta.description or 'image'}: foreground too small to normalise")
    lo, hi = np.percentile(inside, [NORMALIZATION["lower_percentile"], NORMALIZATION["upper_percentile"]])
    scale = float(hi - lo) if hi > lo else 1.0
    return volume.with_array((values - np.float32(lo)) / np.float32(scale))
