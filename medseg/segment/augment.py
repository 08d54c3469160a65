"""Random poses and intensity augmentation for CC training (parameters drawn, then applied).

Drawing (``draw_*``) is separated from application so that an augmentation can be replayed and
tested deterministically. Intensity changes mimic raw scanner images: smooth bias fields, gamma,
contrast, blur and Rician noise, applied before the normalisation that inference uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.segment.data import PlanePose


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 30.0
    tilt_deg: float = 6.0
    offset_sd_mm: float = 2.0
    max_offset_mm: float = 5.0
    offset_uniform_mm: float = 0.0  # > 0: offsets uniform in +-this instead (planes across the head)
    slab_mm: tuple[float, float] = (1.0, 6.0)
    shift_mm: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    negative_fraction: float = 0.15  # planes 10-40 mm off the midline (empty target)
    noise_only_fraction: float = 0.05  # images of pure noise (empty target)
    # Images of no anatomy with an empty target: uniform or textured blobs (bottles, phantoms),
    # noise on a grey floor. Skull stripping needs them: without, a uniform blob looks like an
    # already skull-stripped brain to the network.
    shapes_fraction: float = 0.0
    bias: float = 0.5  # max log-amplitude of the bias field
    gamma: tuple[float, float] = (0.6, 1.6)
    noise: tuple[float, float] = (0.0, 0.06)
    blur_px: tuple[float, float] = (0.0, 1.0)
    # Lower acquired resolution (templates, 2-3 mm scans, thick localizers): the plane is reduced
    # by a factor drawn per axis in this range and brought back (linear), in this share of samples.
    resolution: tuple[float, float] = (1.0, 1.0)
    resolution_fraction: float = 0.0
    # SynthSeg-style tissue contrast: non-brain tissue (scalp, fat, skull marrow) relative to brain,
    # raw scanner T1s often have a much brighter scalp than FreeSurfer's normalised T1.
    outside_brain_gain: tuple[float, float] = (0.4, 2.5)
    csf_gain: tuple[float, float] = (0.5, 1.6)
    grey_matter_gain: tuple[float, float] = (0.85, 1.15)
    other_gain: tuple[float, float] = (0.8, 1.2)
    tissue_fraction: float = 0.8  # share of samples that get tissue contrast changes
    skull_stripped_fraction: float = 0.2  # share of samples shown skull-stripped (brain mask)
    # SynthSeg-style images synthesised from the aseg (medseg.segment.synthseg) in this share of a
    # scanned subject's samples; a label-only subject's samples are all synthesised.
    synth_fraction: float = 0.0
    synth_texture: tuple[float, float] = (0.0, 0.08)  # within-label relative standard deviation
    synth_head_fraction: float = 0.7  # share of synthesised images with skull and scalp


@dataclass(frozen=True)
class IntensityParams:
    bias_coefficients: tuple[float, ...]
    gamma: float
    noise: float
    blur_px: float
    scale_jitter: float
    resolution: tuple[float, float] = (1.0, 1.0)  # reduction factor (rows, columns)


def draw_pose(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[PlanePose, bool]:
    """A random plane pose; returns (pose, is_negative)."""
    negative = rng.random() < cfg.negative_fraction
    if cfg.offset_uniform_mm > 0:
        offset = float(rng.uniform(-cfg.offset_uniform_mm, cfg.offset_uniform_mm))
    elif negative:
        offset = rng.uniform(10, 40) * rng.choice([-1, 1])
    else:
        offset = float(np.clip(rng.normal(0, cfg.offset_sd_mm), -cfg.max_offset_mm, cfg.max_offset_mm))
    pose = PlanePose(
        rotation_deg=float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)),
        tilt_lr_deg=float(rng.uniform(-cfg.tilt_deg, cfg.tilt_deg)),
        tilt_si_deg=float(rng.uniform(-cfg.tilt_deg, cfg.tilt_deg)),
        offset_mm=offset,
        slab_mm=float(rng.uniform(*cfg.slab_mm)),
        shift_mm=(float(rng.uniform(-cfg.shift_mm, cfg.shift_mm)),
                  float(rng.uniform(-cfg.shift_mm, cfg.shift_mm))),
        scale=float(rng.uniform(*cfg.scale)),
    )
    return pose, negative


def draw_intensity(rng: np.random.Generator, cfg: AugmentConfig) -> IntensityParams:
    return IntensityParams(
        bias_coefficients=tuple(float(c) for c in rng.uniform(-cfg.bias, cfg.bias, 6)),
        gamma=float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1])))),
        noise=float(rng.uniform(*cfg.noise)),
        blur_px=float(rng.uniform(*cfg.blur_px)),
        scale_jitter=float(rng.uniform(0.9, 1.1)),
        resolution=((float(rng.uniform(*cfg.resolution)), float(rng.uniform(*cfg.resolution)))
                    if rng.random() < cfg.resolution_fraction else (1.0, 1.0)),
    )


def apply_tissue_contrast(image: np.ndarray, tissue: np.ndarray, cfg: AugmentConfig,
                          rng: np.random.Generator) -> np.ndarray:
    """Scale each tissue class by its own random gain (white matter stays the reference); the
    gain map is smoothed so class borders stay natural."""
    if rng.random() >= cfg.tissue_fraction:
        return image
    gains = np.ones(5, np.float32)
    gains[0] = np.exp(rng.uniform(np.log(cfg.outside_brain_gain[0]), np.log(cfg.outside_brain_gain[1])))
    gains[2] = rng.uniform(*cfg.grey_matter_gain)
    gains[3] = rng.uniform(*cfg.csf_gain)
    gains[4] = rng.uniform(*cfg.other_gain)
    factor = ndimage.gaussian_filter(gains[tissue.astype(int)], 1.0)
    return (image * factor).astype(np.float32)


def apply_intensity(image: np.ndarray, params: IntensityParams, rng: np.random.Generator) -> np.ndarray:
    """Raw-scanner look: bias field x gamma x blur + Rician noise (image in [0, ~1])."""
    h, w = image.shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    c = params.bias_coefficients
    log_field = c[0] * x + c[1] * y + c[2] * x * y + c[3] * x * x + c[4] * y * y + c[5] * x * y * y
    out = np.clip(image, 0, None) ** params.gamma * np.exp(log_field)
    if params.blur_px > 0.2:
        out = ndimage.gaussian_filter(out, params.blur_px)
    if max(params.resolution) > 1.05:
        small = ndimage.zoom(out, (1 / params.resolution[0], 1 / params.resolution[1]), order=1)
        out = ndimage.zoom(small, (h / small.shape[0], w / small.shape[1]), order=1)
    if params.noise > 0:
        out = np.hypot(out + rng.normal(0, params.noise, out.shape), rng.normal(0, params.noise, out.shape))
    return out.astype(np.float32)


def synthetic_negative(size: int, rng: np.random.Generator) -> np.ndarray:
    """An image without anatomy: one to three ellipses or rectangles, each uniform or filled with
    smooth random texture, under a bias field and Rician noise; or noise on a grey floor."""
    kind = rng.integers(3)
    if kind == 2:  # noise with a mean: an image that is "all foreground"
        return np.abs(rng.normal(rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.4), (size, size))).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        ry, rx = rng.uniform(0.1, 0.4, 2) * size
        angle = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / rx
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ry
        inside = (u ** 2 + v ** 2 <= 1) if rng.random() < 0.7 else (np.abs(u) <= 1) & (np.abs(v) <= 1)
        level = rng.uniform(0.3, 1.0)
        if kind == 1:  # textured blob
            texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(1.0, 6.0))
            level = level * (1 + rng.uniform(0.1, 0.6) * texture / (texture.std() + 1e-6))
        image = np.where(inside, level, image)
    params = IntensityParams(tuple(float(c) for c in rng.uniform(-0.4, 0.4, 6)), 1.0,
                             float(rng.uniform(0.0, 0.05)), float(rng.uniform(0.0, 1.5)), 1.0)
    return apply_intensity(np.clip(image, 0, None), params, rng)
