"""Intensity matching of a station to its neighbour over their overlap.

Method: a robust linear fit of neighbour vs station values at the same voxels of the registered
overlap, by default gain only (``gain``, ``constant``), optionally gain + offset (``linear``).
A gain varying smoothly head-foot across each station is fitted on top of these gains in
:mod:`medseg.spine.field`.

Why not histogram matching: after registration the overlap holds the same anatomy voxel for voxel,
so a direct fit uses that correspondence; MR station differences are mostly multiplicative
(receiver gain, coil sensitivity), which a gain captures without distorting contrast, whereas a
histogram match is non-linear and is biased when the two fields of view hold different amounts of
background. Outliers (misregistered edges, flow) are trimmed iteratively (MAD).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# "gain": a head-foot gain profile per station (medseg.spine.field), starting from these gains;
# "constant": these gains alone.
IntensityMode = Literal["gain", "constant", "linear", "none"]


def fit_intensity(station: np.ndarray, neighbour: np.ndarray, valid: np.ndarray, *,
                  mode: IntensityMode = "gain", iterations: int = 3) -> tuple[float, float]:
    """(gain, offset) such that ``gain * station + offset`` matches ``neighbour`` on ``valid``
    foreground voxels."""
    if mode == "none":
        return 1.0, 0.0
    s = station[valid].astype(np.float64)
    n = neighbour[valid].astype(np.float64)
    if s.size < 100:
        return 1.0, 0.0
    # Foreground of both: background noise carries no gain information.
    threshold_s = 0.1 * np.percentile(s, 99)
    threshold_n = 0.1 * np.percentile(n, 99)
    keep = (s > threshold_s) & (n > threshold_n)
    s, n = s[keep], n[keep]
    if s.size < 100:
        return 1.0, 0.0
    gain, offset = 1.0, 0.0
    for _ in range(iterations):
        if mode in ("gain", "constant"):
            gain, offset = float(np.dot(s, n) / np.dot(s, s)), 0.0
        else:
            gain, offset = (float(v) for v in np.polyfit(s, n, 1))
        residual = n - (gain * s + offset)
        mad = np.median(np.abs(residual - np.median(residual))) * 1.4826 + 1e-12
        inliers = np.abs(residual) < 3.0 * mad
        if inliers.sum() < 100 or inliers.all():
            break
        s, n = s[inliers], n[inliers]
    return gain, offset


def ncc(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    """Normalised cross-correlation of two images over ``valid``."""
    x = a[valid].astype(np.float64)
    y = b[valid].astype(np.float64)
    if x.size < 2:
        return float("nan")
    x -= x.mean()
    y -= y.mean()
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / denominator) if denominator > 0 else float("nan")
