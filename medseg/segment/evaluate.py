"""Evaluation helpers for the CC model (used by pipelines/evaluate_cc.py and the notebooks)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from medseg.infer.normalize2d import normalize_slice
from medseg.infer.runtime import Predictor
from medseg.segment.data import PlanePose, Subject


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def hd95(a: np.ndarray, b: np.ndarray, spacing: float) -> float:
    """95th-percentile symmetric Hausdorff distance (mm), MONAI."""
    from monai.metrics import compute_hausdorff_distance

    if not np.any(a) or not np.any(b):
        return float("inf")
    value = compute_hausdorff_distance(torch.from_numpy(np.asarray(a, np.float32)[None, None]),
                                       torch.from_numpy(np.asarray(b, np.float32)[None, None]),
                                       percentile=95, spacing=spacing)
    return float(value.item())


def predict_masks(runtime: Predictor, images: Sequence[np.ndarray]) -> np.ndarray:
    """Label-1 masks of network-grid planes (each normalised on its own foreground, as in
    validation), with the normalisation and threshold of the model's contract."""
    contract = runtime.contract
    batch = np.stack([normalize_slice(i, contract.input.normalization.percentiles) for i in images])[:, None]
    return runtime.probabilities(batch) > contract.output.threshold


def dice_vs_poses(runtime: Predictor, subjects: Sequence[Subject], poses: Sequence[PlanePose]
                  ) -> dict[str, list[float]]:
    """Dice per subject for each pose (subject name -> list aligned with ``poses``)."""
    size = runtime.contract.input.size
    spacing = float(runtime.contract.input.spacing_mm)
    curves = {}
    for subject in subjects:
        pairs = [subject.sample(pose, size, spacing) for pose in poses]
        masks = predict_masks(runtime, [image for image, _ in pairs])
        curves[subject.name] = [dice(m, label) for m, (_, label) in zip(masks, pairs)]
    return curves
