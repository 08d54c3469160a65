"""Resampling a Volume onto another grid, through SimpleITK."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from medseg.volume import Interpolation, Volume

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


def _reference_image(shape: Sequence[int], affine: np.ndarray) -> sitk.Image:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    reference = sitk.Image([int(s) for s in shape], sitk.sitkUInt8)
    reference.SetSpacing([float(s) for s in spacing])
    reference.SetOrigin([float(o) for o in affine[:3, 3]])
    reference.SetDirection([float(d) for d in (affine[:3, :3] / spacing).ravel()])
    return reference


def resample_to_grid(
    volume: Volume,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    interpolation: Interpolation | None = None,
    default_value: float = 0.0,
) -> Volume:
    """Resample ``volume`` onto the grid (``shape``, voxel->LPS ``affine``).

    Interpolation defaults to nearest neighbour for label volumes and linear otherwise. Labels keep
    their dtype; intensities are resampled in float32.
    """
    if interpolation is None:
        interpolation = "nearest" if volume.meta.is_label else "linear"
    reference = _reference_image(tuple(shape), np.asarray(affine, dtype=np.float64))
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(reference)
    resampler.SetInterpolator(_INTERPOLATORS[interpolation])
    resampler.SetDefaultPixelValue(float(default_value))
    resampler.SetTransform(sitk.Transform())

    keep_dtype = interpolation == "nearest"
    source = volume if keep_dtype else volume.with_array(volume.array.astype(np.float32))
    if volume.array.ndim == 4:
        outputs = [
            np.transpose(sitk.GetArrayFromImage(resampler.Execute(source.to_sitk(v))), (2, 1, 0))
            for v in range(volume.array.shape[3])
        ]
        array = np.stack(outputs, axis=-1)
    else:
        array = np.transpose(sitk.GetArrayFromImage(resampler.Execute(source.to_sitk())), (2, 1, 0))
    return Volume(array, affine, volume.meta)
