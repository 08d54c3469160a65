"""SynthSeg-style training images synthesised from label maps (after Billot et al., SynthSeg,
Medical Image Analysis 2023), in 2D on the sampled plane.

A FreeSurfer aseg without its T1 (or a labelled subject's aseg, for contrast the scans here do
not show) becomes training images: each label group gets a random mean intensity and texture,
the planes of a thick slab are averaged (partial volume), and the shared scanner-look
augmentation (bias field, gamma, blur, lower resolution, Rician noise; :mod:`.augment`) follows.
The means are drawn around T1 contrast (white matter the brightest brain tissue, CSF the darkest)
with wide ranges, not uniformly as SynthSeg does: this network reads T1-weighted localizers and
3D T1s only, and the CC-alone definition (no fornix, no septum) rests on its T1 look.

An aseg stops at the brain. Outside it, a head is modelled from the distance to the brain's
envelope: sulcal and extra-cerebral CSF, a dark skull, a bright scalp of random thicknesses, or
no head at all (the skull-stripped look). The distance is computed once per subject in 3D
(:func:`outside_distance`) and looked up on each plane.

Hand-written: MONAI has no label-to-image synthesis; TorchIO's ``RandomLabelsToImage`` (not a
dependency here) synthesises whole volumes, and a 256^3 volume per 2D training plane would cost
~100x the plane itself; the head outside the aseg and the T1-bound contrast are ours anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Label groups of FreeSurfer's aseg and the range of their mean intensity (white matter = 1).
# Left and right structures share a group (one draw), as they share contrast in a scan.
GROUPS: dict[str, tuple[tuple[int, ...], tuple[float, float]]] = {
    "white_matter": ((2, 41, 7, 46, 77, 85, 251, 252, 253, 254, 255), (1.0, 1.0)),
    "brainstem": ((16, 28, 60), (0.8, 1.0)),
    "cortex": ((3, 42), (0.45, 0.85)),
    "cerebellar_cortex": ((8, 47), (0.45, 0.85)),
    "thalamus": ((10, 49), (0.7, 0.95)),
    "caudate": ((11, 50), (0.55, 0.85)),
    "putamen": ((12, 51), (0.55, 0.9)),
    "pallidum": ((13, 52), (0.7, 0.95)),
    "hippocampus": ((17, 53), (0.5, 0.8)),
    "amygdala": ((18, 54), (0.5, 0.8)),
    "accumbens": ((26, 58), (0.55, 0.85)),
    "ventricle_csf": ((4, 43, 5, 44, 14, 15, 24, 72), (0.02, 0.35)),
    "choroid_plexus": ((31, 63), (0.3, 0.8)),
    "vessel": ((30, 62), (0.2, 1.2)),
}
# Outside the labelled brain (looked up by distance to the brain's envelope, see outside_distance)
HEAD_RANGES = {"sulcal_csf": (0.02, 0.4), "skull": (0.0, 0.2), "scalp": (0.5, 1.6)}
OTHER_RANGE = (0.5, 1.0)  # any label not listed above
GROUP_INDEX = {name: index for index, name in enumerate(GROUPS, start=1)}  # as group_map numbers them
ENVELOPE_CLOSING_MM = 4  # the brain's envelope: labelled brain closed over the sulci
DISTANCE_CAP_MM = 60


def group_map(labels: np.ndarray) -> np.ndarray:
    """uint8 group index per voxel: 0 outside the labelled brain, 1..len(GROUPS) per group in
    GROUPS' order, len(GROUPS) + 1 for labels not listed."""
    out = np.where(labels > 0, len(GROUPS) + 1, 0).astype(np.uint8)
    for index, (values, _) in enumerate(GROUPS.values(), start=1):
        out[np.isin(labels, values)] = index
    out[(labels >= 1000) & (labels < 3000)] = GROUP_INDEX["cortex"]  # aparc+aseg's cortical parcels
    return out


def outside_distance(labels: np.ndarray, spacing_mm: float = 1.0) -> np.ndarray:
    """uint8 distance in mm (capped) from the brain's envelope, 0 inside it; the envelope is the
    labelled brain closed over its sulci and filled. Voxels inside the envelope but unlabelled
    (sulcal CSF) get 1 so that synthesis can tell them from brain tissue."""
    brain = labels > 0
    radius = max(1, int(round(ENVELOPE_CLOSING_MM / spacing_mm)))
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), radius)
    envelope = ndimage.binary_fill_holes(ndimage.binary_closing(np.pad(brain, radius), ball))
    envelope = envelope[(slice(radius, -radius),) * 3]
    distance = ndimage.distance_transform_edt(~envelope) * spacing_mm
    out = np.minimum(np.ceil(distance), DISTANCE_CAP_MM).astype(np.uint8)
    out[envelope & ~brain] = 1  # sulcal CSF: inside the envelope, no label
    out[brain] = 0
    return out


@dataclass(frozen=True)
class SynthParams:
    means: tuple[float, ...]  # per group index (0 unused)
    texture: float  # within-label standard deviation (relative)
    head: bool  # model skull and scalp (False: the skull-stripped look)
    csf_mm: float  # thickness of extra-cerebral CSF
    skull_mm: float
    scalp_mm: float
    sulcal_csf: float
    skull: float
    scalp: float


def draw_synth(rng: np.random.Generator, texture: tuple[float, float] = (0.0, 0.08),
               head_fraction: float = 0.7) -> SynthParams:
    means = [0.0]
    for _, (low, high) in GROUPS.values():
        means.append(float(rng.uniform(low, high)))
    means.append(float(rng.uniform(*OTHER_RANGE)))
    return SynthParams(
        means=tuple(means), texture=float(rng.uniform(*texture)), head=bool(rng.random() < head_fraction),
        csf_mm=float(rng.uniform(1.0, 3.0)), skull_mm=float(rng.uniform(3.0, 8.0)),
        scalp_mm=float(rng.uniform(3.0, 9.0)), sulcal_csf=float(rng.uniform(*HEAD_RANGES["sulcal_csf"])),
        skull=float(rng.uniform(*HEAD_RANGES["skull"])), scalp=float(rng.uniform(*HEAD_RANGES["scalp"])))


def reference_params() -> SynthParams:
    """Mid-range contrast and head thicknesses, no texture: a label-only subject's stored image."""
    ranges = [(0.0, 0.0), *(r for _, r in GROUPS.values()), OTHER_RANGE]
    return SynthParams(
        means=tuple(float(np.mean(r)) for r in ranges), texture=0.0, head=True, csf_mm=2.0,
        skull_mm=5.0, scalp_mm=6.0, sulcal_csf=float(np.mean(HEAD_RANGES["sulcal_csf"])),
        skull=float(np.mean(HEAD_RANGES["skull"])), scalp=float(np.mean(HEAD_RANGES["scalp"])))


def texture_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth noise of unit standard deviation (tissue texture, scalp inhomogeneity)."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 1.0)
    return (noise / (noise.std() + 1e-6)).astype(np.float32)


def synthesise(groups: np.ndarray, distance: np.ndarray, params: SynthParams,
               noise: np.ndarray) -> np.ndarray:
    """A plane's image (white matter ~1) from its group map, outside distance and texture field
    (:func:`texture_field`; all the same shape)."""
    means = np.asarray(params.means, np.float32)
    image = means[groups.astype(int)] * (1.0 + params.texture * noise)
    outside = groups == 0
    d = distance.astype(np.float32)
    layer = np.zeros(groups.shape, np.float32)
    layer[outside & (d >= 1) & (d <= params.csf_mm)] = params.sulcal_csf
    if params.head:
        skull_end = params.csf_mm + params.skull_mm
        layer[outside & (d > params.csf_mm) & (d <= skull_end)] = params.skull
        scalp = outside & (d > skull_end) & (d <= skull_end + params.scalp_mm)
        layer[scalp] = params.scalp * (1.0 + 0.15 * noise[scalp])
    image = np.where(outside, layer, image)
    return np.clip(image, 0.0, None).astype(np.float32)
