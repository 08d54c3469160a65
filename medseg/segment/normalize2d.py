"""Normalisation of one 2D plane for training, identical in form to the series normalisation."""

from __future__ import annotations

import numpy as np

from medseg.preprocess.normalize import NORMALIZATION


def head_mask_2d(image: np.ndarray) -> np.ndarray:
    """Otsu foreground of a 2D image (numpy; no connected-component step)."""
    values = image[np.isfinite(image)].ravel()
    if values.size == 0 or np.ptp(values) <= 0:
        return np.zeros(image.shape, bool)
    hist, edges = np.histogram(values, bins=128)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * centres)
    total_w, total_m = weight[-1], mean[-1]
    between = (mean * total_w - weight * total_m) ** 2 / np.maximum(weight * (total_w - weight), 1e-12)
    return image > centres[int(np.argmax(between))]


def normalize_slice(image: np.ndarray) -> np.ndarray:
    """Percentile scaling over the foreground of this plane (NORMALIZATION's percentiles)."""
    mask = head_mask_2d(image)
    values = image[mask] if mask.sum() > 50 else image.ravel()
    lo, hi = np.percentile(values, [NORMALIZATION["lower_percentile"], NORMALIZATION["upper_percentile"]])
    return ((image - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
