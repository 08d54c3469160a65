"""Torch datasets of training samples (CC or brain target) drawn on the fly from labelled subjects."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from medseg.segment.augment import (
    AugmentConfig,
    apply_intensity,
    apply_tissue_contrast,
    draw_intensity,
    draw_pose,
    synthetic_negative,
)
from medseg.segment.data import PlanePose, Subject
from medseg.segment.normalize2d import normalize_slice
from medseg.segment.synthseg import draw_synth


class PlaneSamples(torch.utils.data.IterableDataset):
    """Endless random training samples (each worker has its own seeded generator)."""

    def __init__(self, subjects: Sequence[Subject], augment: AugmentConfig, size: int,
                 spacing: float, seed: int = 0, target: str = "corpus_callosum"):
        self.subjects, self.augment, self.size, self.spacing, self.seed = subjects, augment, size, spacing, seed
        self.target = target

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0, torch.initial_seed() % 2**31])
        while True:
            yield make_sample(self.subjects, self.augment, self.size, self.spacing, rng, self.target)


def make_sample(subjects: Sequence[Subject], cfg: AugmentConfig, size: int, spacing: float,
                rng: np.random.Generator, target: str = "corpus_callosum") -> tuple[torch.Tensor, torch.Tensor]:
    draw = rng.random()
    if draw < cfg.noise_only_fraction:
        sigma = rng.uniform(0.02, 0.2)
        image = np.hypot(rng.normal(0, sigma, (size, size)), rng.normal(0, sigma, (size, size)))
        label = np.zeros((size, size), bool)
    elif draw < cfg.noise_only_fraction + cfg.shapes_fraction:
        image, label = synthetic_negative(size, rng), np.zeros((size, size), bool)
    else:
        subject = subjects[int(rng.integers(len(subjects)))]
        pose, _ = draw_pose(rng, cfg)
        if cfg.synth_fraction > 0 and subject.groups is None:
            raise ValueError(f"{subject.name}: synth_fraction > 0 but no label maps (Subject.load(synthesis=True))")
        if subject.label_only or (cfg.synth_fraction > 0 and rng.random() < cfg.synth_fraction):
            # synthesised from the labels: contrast, texture and head drawn per sample (scan scale)
            synth = draw_synth(rng, cfg.synth_texture, cfg.synth_head_fraction)
            image, label = subject.sample(pose, size, spacing, target=target, synth=synth, rng=rng)
        else:
            image, label, tissue, brain = subject.sample(pose, size, spacing, tissue=True, target=target)
            image = apply_tissue_contrast(image, tissue, cfg, rng)
            if brain is not None and rng.random() < cfg.skull_stripped_fraction:
                image = image * brain
        image = apply_intensity(image / subject.white_level, draw_intensity(rng, cfg), rng)
    image = normalize_slice(image) * np.float32(rng.uniform(0.9, 1.1))
    return torch.from_numpy(image[None].astype(np.float32)), torch.from_numpy(label[None].astype(np.float32))


def validation_set(subjects: Sequence[Subject], size: int, spacing: float,
                   poses: Sequence[PlanePose] = (PlanePose(),),
                   target: str = "corpus_callosum") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed (image, label) pairs: every subject at every pose, without intensity augmentation."""
    samples = []
    for subject in subjects:
        for pose in poses:
            image, label = subject.sample(pose, size, spacing, target=target)
            image = normalize_slice(image)
            samples.append((torch.from_numpy(image[None]), torch.from_numpy(label[None].astype(np.float32))))
    return samples
