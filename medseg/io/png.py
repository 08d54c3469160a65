"""Writing PNG pictures atomically (OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medseg.io.atomic import atomic_path


def write_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as temp:
        if not cv2.imwrite(str(temp), image):
            raise OSError(f"could not write {path}")
    return path
