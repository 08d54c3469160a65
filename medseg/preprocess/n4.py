"""N4 bias-field correction (SimpleITK), for 3D volumes and for stacks of thick 2D slices.

The field is estimated on a shrunken image inside a foreground mask and applied at full
resolution as exp(log-field). Defaults follow fMRIPrep: 4 fitting levels of 50 iterations,
convergence 1e-7, B-spline control-point spacing 200 mm; the shrink factor gives ~4 mm voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from medseg.planes import slice_axis
from medseg.preprocess.normalize import foreground_mask
from medseg.volume import Volume


@dataclass(frozen=True)
class N4Options:
    iterations: tuple[int, ...] = (50, 50, 50, 50)
    iterations_2d: tuple[int, ...] = (25, 25, 25)  # per slice of a sparse stack
    convergence: float = 1e-7
    spline_distance_mm: float = 200.0
    target_spacing_mm: float = 4.0
    # Stacks whose slices lie further apart than this are corrected slice by slice in 2D (a
    # 3-plane localizer at 15 mm); contiguous thick slices (35 x 4 mm) form a volume.
    thick_slice_gap_mm: float = 8.0

    @classmethod
    def fast(cls) -> "N4Options":
        """The profile the positioning pipeline uses: ~8 mm working voxels, 3 x 20 iterations.
        The CC network is trained with random bias fields, so it needs shading removed, not an
        fMRIPrep-grade field (see pipelines/evaluate_n4.py for both profiles' accuracy)."""
        return cls(iterations=(20, 20, 20), iterations_2d=(20, 20), convergence=1e-4, target_spacing_mm=8.0)


# A fit on fewer shrunken voxels than this (a localizer on the fast profile's 8 mm grid: ~17 k)
# runs on one thread: on 2 cores ITK's per-iteration thread start-up costs more CPU than it saves.
SMALL_FIT_VOXELS = 100_000
MIN_SLICES_3D = 4  # fewer slices than this (a 1- or 2-slice localizer): corrected slice by slice


def _shrink_factors(spacing: np.ndarray, size: np.ndarray, target: float, dims: int) -> list[int]:
    """Shrink factors towards ``target`` mm voxels that keep at least 4 voxels along each axis
    (ITK fails with 'zero-valued spacing' when a shrunken axis vanishes)."""
    return [max(1, min(int(round(target / s)), int(n) // 4)) for s, n in zip(spacing[:dims], size[:dims])]


def _n4(image: sitk.Image, mask: sitk.Image, options: N4Options, iterations: tuple[int, ...]) -> sitk.Image:
    """The log bias field of ``image`` at its full resolution.

    The field is evaluated on the shrunken grid and resampled linearly to full resolution: it is
    smooth on a 200 mm scale, and evaluating the B-spline at every full-resolution voxel
    (16 M for a 1 mm head) costs more than the fit.
    """
    spacing = np.asarray(image.GetSpacing())
    shrink = _shrink_factors(spacing, np.asarray(image.GetSize()), options.target_spacing_mm,
                             image.GetDimension())
    small = sitk.Shrink(image, shrink)
    small_mask = sitk.Shrink(mask, shrink)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    if int(np.prod(small.GetSize())) < SMALL_FIT_VOXELS:
        corrector.SetNumberOfThreads(1)  # threads cost more than they save on a tiny grid
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.SetConvergenceThreshold(options.convergence)
    extent = np.asarray(small.GetSize()) * np.asarray(small.GetSpacing())
    points = [max(4, int(np.ceil(e / options.spline_distance_mm)) + 3) for e in extent]
    corrector.SetNumberOfControlPoints(points)
    corrector.Execute(small, small_mask)
    small_field = corrector.GetLogBiasFieldAsImage(small)
    return sitk.Resample(small_field, image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32,
                         True)


def correct_bias_field(volume: Volume, mask: np.ndarray | None = None,
                       options: N4Options = N4Options(), *,
                       slices: tuple[int, int] | None = None) -> tuple[Volume, Volume]:
    """(corrected, bias_field) Volumes; the field is multiplicative (corrected = image / field).

    A stack of thick slices (slice step > ``thick_slice_gap_mm``, e.g. a sagittal localizer) or of
    fewer than :data:`MIN_SLICES_3D` slices is corrected slice by slice in 2D; anything else in 3D.

    ``slices`` = (first, stop) along the slice axis: the field is fitted on that slab only (the
    slices a localizer's CC search reads) and held constant beyond it, from the slab's edge
    slices. The slab's voxels are corrected exactly as a fit on them alone would; outside it the
    correction is an extrapolation, good enough to view (the field is smooth on a 200 mm scale).
    """
    array = np.asarray(volume.array, dtype=np.float32)
    if mask is None:
        mask = foreground_mask(volume)
    if slices is not None:
        return _correct_slab(volume, array, mask, options, slices)
    positive = np.clip(array, 0, None) + 1e-3  # N4 works on the log of the image
    axis = slice_axis(volume.affine, volume.spatial_shape)  # any array axis order (NIfTI)
    if volume.spacing[axis] > options.thick_slice_gap_mm or array.shape[axis] < MIN_SLICES_3D:
        log_field = np.zeros_like(positive)
        in_plane = [a for a in range(3) if a != axis]
        for k in range(array.shape[axis]):
            index = tuple(k if a == axis else slice(None) for a in range(3))
            if mask[index].sum() < 50:
                continue
            image = sitk.GetImageFromArray(np.ascontiguousarray(positive[index].T))
            image.SetSpacing(tuple(float(volume.spacing[a]) for a in in_plane))
            m = sitk.GetImageFromArray(np.ascontiguousarray(mask[index].T.astype(np.uint8)))
            m.CopyInformation(image)
            log_field[index] = sitk.GetArrayFromImage(_n4(image, m, options, options.iterations_2d)).T
    else:
        image = Volume(positive, volume.affine).to_sitk()
        m = Volume(mask.astype(np.uint8), volume.affine).to_sitk()
        log_field = np.transpose(sitk.GetArrayFromImage(_n4(image, m, options, options.iterations)), (2, 1, 0))
    field = np.exp(log_field).astype(np.float32)
    corrected = volume.with_array(array / field)
    return corrected, volume.with_array(field, description="bias field")


def _correct_slab(volume: Volume, array: np.ndarray, mask: np.ndarray, options: N4Options,
                  slices: tuple[int, int]) -> tuple[Volume, Volume]:
    axis = slice_axis(volume.affine, volume.spatial_shape)
    n = array.shape[axis]
    first, stop = max(0, int(slices[0])), min(n, int(slices[1]))
    if stop <= first:
        raise ValueError(f"empty N4 slab {slices} of {n} slices")
    if first == 0 and stop == n:
        return correct_bias_field(volume, mask, options)
    take = np.arange(first, stop)
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.world_coordinates([[first if a == axis else 0 for a in range(3)]])[0]
    slab = Volume(np.take(array, take, axis=axis), affine, volume.meta)
    _, slab_field = correct_bias_field(slab, np.take(mask, take, axis=axis), options)
    nearest = np.clip(np.arange(n), first, stop - 1) - first  # constant beyond the slab
    field = np.take(np.asarray(slab_field.array), nearest, axis=axis)
    corrected = volume.with_array(array / field)
    return corrected, volume.with_array(field, description="bias field")
