"""Blending stations across their overlaps.

``feather``: each station's weight is its distance to its own head-foot edge, so in an overlap
the weights ramp linearly from one station to the next (OpenCV's FeatherBlender uses the same
distance-to-border weights). ``multiband``: Burt-Adelson blending; each band (differences of
Gaussians) is blended with weights smoothed at that band's scale, so low frequencies (shading)
blend over a wide zone and fine detail over a narrow one.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from scipy import ndimage

BlendMode = Literal["feather", "multiband"]


def feather(images: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the images; returns (composite, covered) where covered = any weight > 0."""
    total = np.zeros_like(images[0], dtype=np.float32)
    norm = np.zeros_like(images[0], dtype=np.float32)
    for image, weight in zip(images, weights):
        total += image * weight
        norm += weight
    covered = norm > 0
    out = np.zeros_like(total)
    out[covered] = total[covered] / norm[covered]
    return out, covered


def _normalised_blur(image: np.ndarray, mask: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian blur of ``image`` inside ``mask`` (normalised convolution: no dark rim at edges)."""
    num = ndimage.gaussian_filter(image * mask, sigma)
    den = ndimage.gaussian_filter(mask, sigma)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)


def multiband(images: Sequence[np.ndarray], weights: Sequence[np.ndarray], spacing: Sequence[float],
              *, sigmas_mm: Sequence[float] = (2.0, 6.0, 18.0)) -> tuple[np.ndarray, np.ndarray]:
    """Multi-band blend; ``sigmas_mm`` are the Gaussian scales that separate the bands.

    Band b of station i is blended with weight G_b(hard_i) restricted to station i's field of
    view and normalised over stations, where hard_i marks the voxels that station i wins in the
    feather weights, and G_b blurs at band b's scale (the finest band uses hard_i itself).
    """
    step = np.asarray(spacing, dtype=np.float64)
    stack = np.stack(weights)
    covered = stack.sum(axis=0) > 0
    masks = [(w > 0).astype(np.float32) for w in weights]
    hard = [(np.argmax(stack, axis=0) == i).astype(np.float32) * masks[i] for i in range(len(images))]
    scales = [0.0, *sigmas_mm]  # band b holds detail between scales[b] and scales[b + 1]
    bands = []  # per station: list of band images (last = residual low-pass)
    for image, mask in zip(images, masks):
        levels = [image.astype(np.float32)] + [
            _normalised_blur(image.astype(np.float32), mask, s / step) for s in sigmas_mm]
        bands.append([levels[b] - levels[b + 1] for b in range(len(sigmas_mm))] + [levels[-1]])
    out = np.zeros_like(images[0], dtype=np.float32)
    for b, scale in enumerate(scales):
        w = [hard[i] if scale == 0 else ndimage.gaussian_filter(hard[i], scale / step) * masks[i]
             for i in range(len(images))]
        total = np.maximum(sum(w), 1e-6)
        for i in range(len(images)):
            out += bands[i][b] * w[i] / total
    out[~covered] = 0
    return out, covered
