"""Small mask operations shared by the stages."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean mask (all False if the mask is empty)."""
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)
