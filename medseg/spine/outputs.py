"""Writing a composite: NIfTI, DICOM derived series, PNG preview and JSON report (all atomic)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medseg.io import write_dicom_series, write_nifti
from medseg.io.atomic import write_json_atomic
from medseg.io.png import write_png
from medseg.spine.compose import CompositeResult
from medseg.volume import Volume


def preview_image(volume: Volume, slice_index: int | None = None) -> np.ndarray:
    """An 8-bit view of the middle slice, superior at the top, anterior at the left, square
    pixels (for sagittal composites: the mid-sagittal slice)."""
    display = volume.reorient("PIL" if volume.orientation[2] in "LR" else "LIP")
    array = np.asarray(display.array, dtype=np.float32)
    k = array.shape[2] // 2 if slice_index is None else slice_index
    image = array[:, :, k].T  # rows: superior -> inferior, columns: anterior -> posterior
    hi = float(np.percentile(image, 99.5)) or 1.0
    image = np.clip(image / hi * 255.0, 0, 255).astype(np.uint8)
    sx, sy = float(display.spacing[0]), float(display.spacing[1])
    if abs(sx - sy) > 1e-6:
        image = cv2.resize(image, (int(round(image.shape[1] * sx / sy)), image.shape[0]),
                           interpolation=cv2.INTER_LINEAR)
    return image


def write_stitch_outputs(result: CompositeResult, out_dir: Path, *, dicom: bool = True) -> dict[str, Path]:
    """Write composite.nii.gz, composite_dicom/, preview.png and stitch.json into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"nifti": write_nifti(result.volume, out_dir / "composite.nii.gz")}
    if dicom:
        target = out_dir / "composite_dicom"
        if target.exists():
            import shutil

            shutil.rmtree(target)
        write_dicom_series(result.volume, target, series_description="medseg spine composite",
                           series_number=9100, derivation="medseg stitch: multi-station composite")
        paths["dicom"] = target
    paths["preview"] = write_png(preview_image(result.volume), out_dir / "preview.png")
    report = result.report()
    report["files"] = {k: str(v) for k, v in paths.items()}
    paths["report"] = write_json_atomic(out_dir / "stitch.json", report)
    return paths
