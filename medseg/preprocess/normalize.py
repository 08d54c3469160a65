"""Foreground masks and intensity normalisation.

The networks normalise each network-grid plane on its own (:mod:`medseg.infer.normalize2d`, with
the percentiles of their ``model.json``).
Pure-noise planes outside the head are never run at all (the segmenter gates slices on the head
mask of the whole series), and the network was trained with noise-only and lateral negatives.
:func:`normalize_intensity` is the series-level variant, for stages that see whole volumes.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.errors import InputError
from medseg.infer.normalize2d import TRAINING_PERCENTILES
from medseg.masks import binary_closing, fill_holes_per_plane, largest_component, percentiles
from medseg.planes import section_axis
from medseg.volume import Volume


def foreground_mask(volume: Volume) -> np.ndarray:
    """Head/body foreground: Otsu threshold (SimpleITK) on log intensities, largest connected
    component, closing, holes filled plane by plane (along the slice axis of a stack, in sagittal
    planes for a 3D volume: the same mask whatever the array layout).

    Otsu on raw intensities fails on raw T1s whose scalp fat is much brighter than the brain: it
    keeps only the fat. On log intensities the split is between air noise and tissue. Holes are
    filled in every plane, which also fills those enclosed in 3D (a hole enclosed in 3D is
    enclosed in each of its planes) and cavities that open to the outside in 3D.

    Raises:
        InputError: the image has no foreground (constant or empty).
    """
    stored = np.asarray(volume.array)
    if stored.ndim == 4:
        stored = stored[..., 0]
    array = stored.astype(np.float32, copy=False)
    if not np.isfinite(array).all() or np.ptp(array) <= 0:
        raise InputError(f"{volume.meta.description or 'image'}: no foreground (constant image)")
    # the 99.5th percentile of the shifted image is that of the image minus the shift (exactly:
    # the shift is monotonic), so one pass gives both
    low, high = percentiles(stored, [0.5, 99.5])
    shifted = np.clip(array - low, 0, None)  # float64, as before
    logged = np.log1p(shifted / (max(high - low, 0.0) + 1e-6) * 1000)
    # SimpleITK imports a C-ordered array ten times faster; a volume's array is often a
    # transposed (Fortran-ordered) view, whose transpose is C-ordered. Otsu does not depend on
    # the axis order; the mask is transposed back.
    transposed = logged.flags.f_contiguous and not logged.flags.c_contiguous
    image = sitk.GetImageFromArray(logged.T if transposed else np.ascontiguousarray(logged))
    mask = sitk.GetArrayFromImage(sitk.OtsuThreshold(image, 0, 1)).astype(bool)
    if transposed:
        mask = mask.T
    if not mask.any():
        raise InputError(f"{volume.meta.description or 'image'}: no foreground found")
    mask = largest_component(mask)
    # then slice by slice: cavities open to the outside in 3D (mouth, ear canals)
    return fill_holes_per_plane(binary_closing(mask, iterations=2) | mask,
                                axis=section_axis(volume.affine, volume.spatial_shape))


def normalize_intensity(volume: Volume, mask: np.ndarray | None = None) -> Volume:
    """Percentile scaling inside ``mask`` (default: :func:`foreground_mask`), with the percentiles
    the networks are trained with (:data:`~medseg.infer.normalize2d.NORMALIZATION`)."""
    if mask is None:
        mask = foreground_mask(volume)
    values = np.asarray(volume.array, dtype=np.float32)
    inside = values[..., 0][mask] if values.ndim == 4 else values[mask]
    if inside.size < 10:
        raise InputError(f"{volume.meta.description or 'image'}: foreground too small to normalise")
    lo, hi = np.percentile(inside, list(TRAINING_PERCENTILES))
    scale = float(hi - lo) if hi > lo else 1.0
    return volume.with_array((values - np.float32(lo)) / np.float32(scale))
