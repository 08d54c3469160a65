"""A rotated rectangular ROI of a composite, resampled onto its own grid with correct geometry."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.resample import resample_to_grid
from medseg.volume import Volume


def extract_rotated_roi(volume: Volume, center_mm: Sequence[float], size_mm: Sequence[float],
                        angle_deg: float, *, spacing_mm: float | None = None,
                        depth_mm: float | None = None) -> Volume:
    """Resample a rotated box of ``volume``.

    The box lies in the image plane of ``volume`` (spanned by its first two axes). It is centred
    on ``center_mm`` (LPS), ``size_mm`` = (width along the rotated first axis, height along the
    rotated second axis), rotated by ``angle_deg`` counter-clockwise as seen on screen (from the
    image's first axis towards its second). Across the plane it keeps the volume's slices
    (``depth_mm`` limits that, centred on ``center_mm``).

    The result's affine places every ROI voxel at its true patient position, so it can be written
    as NIfTI or DICOM and overlaid on the composite.
    """
    direction = volume.direction
    u, v, w = direction[:, 0], direction[:, 1], direction[:, 2]
    t = np.radians(angle_deg)
    axis_u = np.cos(t) * u + np.sin(t) * v
    axis_v = -np.sin(t) * u + np.cos(t) * v
    in_plane = spacing_mm or float(min(volume.spacing[0], volume.spacing[1]))
    slice_step = float(volume.spacing[2])
    width, height = (float(s) for s in size_mm)
    n_u = max(1, int(round(width / in_plane)))
    n_v = max(1, int(round(height / in_plane)))
    if depth_mm is None:
        n_w = volume.spatial_shape[2]
        # keep the volume's own slice positions: offset of the centre from slice 0 along w
        centre_index = volume.voxel_coordinates([center_mm])[0]
        w_offset = -centre_index[2] * slice_step
    else:
        n_w = max(1, int(round(depth_mm / slice_step)))
        w_offset = -(n_w - 1) / 2 * slice_step
    affine = np.eye(4)
    affine[:3, 0] = axis_u * in_plane
    affine[:3, 1] = axis_v * in_plane
    affine[:3, 2] = w * slice_step
    affine[:3, 3] = (np.asarray(center_mm, dtype=np.float64)
                     - axis_u * in_plane * (n_u - 1) / 2 - axis_v * in_plane * (n_v - 1) / 2
                     + w * w_offset)
    return resample_to_grid(volume, (n_u, n_v, n_w), affine)
