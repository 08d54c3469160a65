"""Normalisation of one network-grid plane: percentiles over the plane's Otsu foreground.

Training normalises every sample with :data:`NORMALIZATION` (the defaults below), and export
writes it into ``model.json``; inference passes the contract's percentiles
(``contract.input.normalization.percentiles``), so a model trained otherwise runs as trained.
"""

from __future__ import annotations

import numpy as np

# What training uses and export records in the contract (``input.normalization``).
TRAINING_PERCENTILES: tuple[float, float] = (1.0, 99.0)
NORMALIZATION: dict[str, object] = {
    "method": "percentile",
    "lower_percentile": TRAINING_PERCENTILES[0],
    "upper_percentile": TRAINING_PERCENTILES[1],
    "region": "foreground of each network-grid plane: pixels above the Otsu threshold of a 128-bin "
              "histogram of the plane (bins spanning min..max); all pixels if 50 or fewer qualify",
    "outside_image_value": 0.0,
    "output": "(x - p_lower) / (p_upper - p_lower), not clipped; p_upper == p_lower -> divide by 1",
}


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


def slice_percentiles(image: np.ndarray, percentiles: tuple[float, float] = TRAINING_PERCENTILES
                      ) -> tuple[float, float]:
    """(p_lower, p_upper) over the foreground of this plane (all pixels if 50 or fewer are in it)."""
    mask = head_mask_2d(image)
    values = image[mask] if mask.sum() > 50 else image.ravel()
    lo, hi = np.percentile(values, list(percentiles))
    return float(lo), float(hi)


# Mean gradient magnitude inside the (eroded) foreground relative to its median intensity.
# Measured: real brain planes 0.08-0.17 (5 mm localizer slabs of FreeSurfer heads, raw XA30 T1);
# a uniform bottle 0.00-0.03 (with N4 shading), the GE physics phantom 0.02-0.05.
MIN_TEXTURE = 0.045


def texture(image: np.ndarray) -> float:
    """Internal texture of a plane's foreground (see MIN_TEXTURE)."""
    from scipy import ndimage

    mask = ndimage.binary_erosion(head_mask_2d(image), iterations=3)
    if mask.sum() < 50:
        return 0.0
    gradient = np.hypot(*np.gradient(image.astype(np.float64)))
    return float(np.mean(gradient[mask]) / (abs(np.median(image[mask])) + 1e-6))


def has_anatomy(image: np.ndarray) -> bool:
    """False for featureless planes (a bottle, flat phantoms): the network is never run on them,
    since it was not trained on such images and normalising them distorts them."""
    return texture(image) >= MIN_TEXTURE


def normalize_slice(image: np.ndarray, percentiles: tuple[float, float] = TRAINING_PERCENTILES) -> np.ndarray:
    """Percentile scaling over the foreground of this plane: (x - p_lower) / (p_upper - p_lower)."""
    lo, hi = slice_percentiles(image, percentiles)
    return ((image - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
