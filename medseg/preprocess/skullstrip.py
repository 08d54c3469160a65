"""Learned skull stripping (brain extraction) through onnxruntime, SynthStrip-style post-processing.

The network (``models/skullstrip_attention_unet.onnx``, trained by ``pipelines/train.py`` from
``configs/skullstrip_attention_unet.yaml``) segments the brain on 2D sagittal planes, so the same
model serves thick-slice localizers and 3D volumes:

- **Planes**: when one voxel axis of the input lies within 30 deg of patient left-right (sagittal
  localizers, sagittal 3D T1s, FreeSurfer-conformed volumes), the planes are the input's own voxel
  planes along it, and the probability only needs in-plane resampling back. Otherwise (axial or
  strongly oblique acquisitions) planes are cut along patient left-right every ``PLANE_STEP_MM``
  and the probability is resampled back trilinearly.
- Each plane is sampled on the network grid (the contract's spacing, rows superior->inferior,
  columns anterior->posterior) with **one crop for all planes**, centred on the head as seen in
  the plane through the head's centre, which is how training cropped (``crop_from_midline``).
  Size, spacing, crop, normalisation percentiles and threshold are the contract's
  (``model.json``, a :class:`~medseg.infer.contract.ModelContract`); planes showing little head
  are not run.
- **Post-processing**: single-plane gaps bridged (:func:`bridge_single_plane_gaps`), then on the
  input grid: probability above the contract's threshold, the largest 3D connected component,
  holes filled in every plane along the sagittal axis (which fills those enclosed in 3D too).
- **No brain**: :class:`NoBrainFoundError` (a clear, per-study error, never an empty mask passed
  on silently) for an image without foreground, or a prediction that is not one confident brain:
  largest sagittal section below ``MIN_BRAIN_SECTION_MM2``, the largest connected part under
  ``MIN_LARGEST_SHARE`` of it, or more than ``MAX_UNCERTAIN`` of the predicted area with
  probability between 0.2 and 0.8. Measured on the network planes (the model shipped in
  ``models/``): real heads 1.00 / 0.09-0.17, a lumbar spine 0.43 / 0.72.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from medseg.errors import InputError, NoBrainFoundError
from medseg.geometry import LEFT
from medseg.infer.grid import VolumeLookup, crop_centre_from_sampler, network_frame
from medseg.infer.normalize2d import normalize_slice
from medseg.infer.runtime import Device, PlaneModel, Precision, Predictor
from medseg.masks import fill_holes_per_plane, largest_component
from medseg.planes import left_right_axis
from medseg.preprocess.normalize import foreground_mask
from medseg.resample import resample_to_grid
from medseg.volume import Volume

log = logging.getLogger(__name__)

MODEL_NAME = "skullstrip_attention_unet"
PLANE_STEP_MM = 1.5  # plane spacing when planes cannot be the input's own voxel planes
MAX_AXIS_ANGLE_DEG = 30.0  # a voxel axis this close to left-right gives the planes
# An adult mid-sagittal brain section (cerebrum, cerebellum, brainstem) is ~110-160 cm2, a young
# child's from ~70 cm2; below 40 cm2 on every plane there is no brain in the image.
MIN_BRAIN_SECTION_MM2 = 4000.0
MIN_LARGEST_SHARE = 0.8
MAX_UNCERTAIN = 0.35
MIN_PLANE_HEAD_MM2 = 1000.0  # planes showing less head than this are not run (P = 0)


@dataclass(frozen=True)
class BrainExtraction:
    mask: Volume  # uint8 brain mask on the input grid
    probability: Volume  # float32 P(brain) on the input grid
    volume_ml: float  # of the mask (only the imaged part for thick-slice stacks)
    max_section_mm2: float  # largest brain area on one sagittal plane (network grid)
    planes: int  # sagittal planes run through the network
    native_planes: bool  # planes were the input's own voxel planes
    confidence: float = 1.0  # mean P(brain) inside the mask (network planes)
    uncertain_fraction: float = 0.0  # share of P > 0.2 with P < 0.8 (network planes)

    def as_dict(self) -> dict:
        return {"volume_ml": round(self.volume_ml, 1), "max_section_mm2": round(self.max_section_mm2, 1),
                "planes": self.planes, "native_planes": self.native_planes,
                "confidence": round(self.confidence, 4), "uncertain_fraction": round(self.uncertain_fraction, 4)}


def bridge_single_plane_gaps(probabilities: np.ndarray) -> np.ndarray:
    """P' = max(P, min(P of the plane before, P of the plane after)), plane by plane.

    A 2D network can drop a single plane that its neighbours agree on (measured: the mid-sagittal
    plane of an already skull-stripped template, which alone looks like a featureless blob). The
    brain is continuous across sagittal planes, so such a plane takes the lower of its two
    neighbours' probabilities; nothing grows beyond what both neighbours cover."""
    if len(probabilities) < 3:
        return probabilities
    bridged = probabilities.copy()
    bridged[1:-1] = np.maximum(probabilities[1:-1], np.minimum(probabilities[:-2], probabilities[2:]))
    return bridged


def _left_right_axis(volume: Volume) -> tuple[int, float]:
    """(voxel axis closest to left-right, |cosine| of its angle to left-right)."""
    return left_right_axis(volume.affine)


def _sagittal_axis(volume: Volume) -> int | None:
    """The voxel axis within MAX_AXIS_ANGLE_DEG of left-right, if any."""
    axis, cosine = _left_right_axis(volume)
    return axis if cosine >= np.cos(np.radians(MAX_AXIS_ANGLE_DEG)) else None


class SkullStripper(PlaneModel):
    """Brain extraction with the shipped ONNX model (``models/<name>.onnx`` + ``.json``)."""

    def __init__(self, runtime: Predictor | None = None, *, name: str = MODEL_NAME,
                 device: Device = "cpu", precision: Precision = "fp32", batch_size: int = 16):
        super().__init__(runtime, name, device, precision)
        self.batch_size = batch_size

    def _plane_stack(self, volume: Volume, head: np.ndarray):
        """(normal, step_mm, first plane point, number of planes, sagittal voxel axis or None)."""
        axis = _sagittal_axis(volume)
        if axis is not None:
            direction = volume.affine[:3, axis]
            step = float(np.linalg.norm(direction))
            first = volume.world_coordinates([[0, 0, 0]])[0]
            return direction / step, step, first, volume.spatial_shape[axis], axis
        points = volume.world_coordinates(np.argwhere(head)[::7])  # a subsample spans the head
        along = points @ LEFT
        lo, hi = float(along.min()) - PLANE_STEP_MM, float(along.max()) + PLANE_STEP_MM
        first = points.mean(axis=0) + (lo - float(points.mean(axis=0) @ LEFT)) * LEFT
        return LEFT.copy(), PLANE_STEP_MM, first, int(np.ceil((hi - lo) / PLANE_STEP_MM)) + 1, None

    def probability_planes(self, volume: Volume, head: np.ndarray):
        """P(brain) on the network planes, single-plane gaps bridged: (probability [plane, row,
        col], probability Volume on the planes' grid, native sagittal axis or None)."""
        values = np.asarray(volume.array, dtype=np.float32)
        if values.ndim == 4:
            values = values[..., 0]
        lookup = VolumeLookup(volume, values, head, outside=self.outside)
        normal, step, first, count, axis = self._plane_stack(volume, head)
        row_dir, col_dir, net_normal = network_frame(normal)
        head_centre = volume.world_coordinates(np.argwhere(head).mean(axis=0)[None])[0]
        crop = crop_centre_from_sampler(lookup.mask, head_centre, row_dir, col_dir,
                                        top_to_centre_mm=self.top_to_centre_mm)
        half = (self.size - 1) / 2.0
        index = np.arange(self.size, dtype=np.float64)
        in_plane = (index[:, None, None] * row_dir + index[None, :, None] * col_dir) * self.spacing
        origins = []
        for k in range(count):
            point = first + k * step * normal
            centre = crop + net_normal * float(np.dot(point - crop, net_normal))
            origins.append(centre - half * self.spacing * (row_dir + col_dir))
        probabilities = np.zeros((count, self.size, self.size), np.float32)
        for start in range(0, count, self.batch_size):
            chunk = range(start, min(count, start + self.batch_size))
            points = {k: origins[k][None, None, :] + in_plane for k in chunk}
            # Planes that show head: the texture gate of the CC model (has_anatomy) would drop
            # the smooth planes of averaged templates, so the head area decides here.
            usable = [k for k in chunk if lookup.mask(points[k]).sum() * self.spacing ** 2 >= MIN_PLANE_HEAD_MM2]
            images = {k: lookup.image(points[k]) for k in usable}
            if usable:
                batch = np.stack([normalize_slice(images[k], self.percentiles) for k in usable])[:, None]
                probabilities[usable] = self.runtime.probabilities(batch.astype(np.float32))
        # The planes as a volume: array [col, row, plane], affine from the network grid.
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1] = col_dir * self.spacing, row_dir * self.spacing
        affine[:3, 2] = normal * step
        affine[:3, 3] = origins[0]
        probabilities = bridge_single_plane_gaps(probabilities)
        grid = Volume(np.ascontiguousarray(probabilities.transpose(2, 1, 0)), affine)
        return probabilities, grid, axis

    def extract(self, volume: Volume, head_mask: np.ndarray | None = None) -> BrainExtraction:
        """The brain mask of ``volume`` on its own grid.

        Raises:
            NoBrainFoundError: no foreground, no anatomy, or no brain-sized section.
        """
        name = volume.meta.description or "image"
        try:
            head = foreground_mask(volume) if head_mask is None else head_mask
        except InputError as exc:
            raise NoBrainFoundError(f"{name}: no brain found ({exc})") from exc
        probabilities, grid, axis = self.probability_planes(volume, head)
        predicted = probabilities > self.threshold
        sections = predicted.sum(axis=(1, 2)) * self.spacing ** 2
        max_section = float(sections.max()) if sections.size else 0.0
        if max_section < MIN_BRAIN_SECTION_MM2:
            raise NoBrainFoundError(
                f"{name}: no brain found (largest sagittal brain section {max_section:.0f} mm2, "
                f"below {MIN_BRAIN_SECTION_MM2:.0f} mm2)")
        share = float(largest_component(predicted).sum() / predicted.sum())
        uncertain = float(((probabilities > 0.2) & (probabilities < 0.8)).sum() / (probabilities > 0.2).sum())
        if share < MIN_LARGEST_SHARE or uncertain > MAX_UNCERTAIN:
            raise NoBrainFoundError(
                f"{name}: no brain found (the prediction is not one confident brain: largest part "
                f"{share:.0%} of it, {uncertain:.0%} uncertain)")
        probability = resample_to_grid(grid, volume.spatial_shape, volume.affine, interpolation="linear")
        p = np.asarray(probability.array, dtype=np.float32)
        mask = largest_component(p > self.threshold)
        mask = fill_holes_per_plane(mask, _left_right_axis(volume)[0])
        voxel_ml = float(np.prod(volume.spacing[:3])) / 1000.0
        return BrainExtraction(
            mask=volume.with_array(mask.astype(np.uint8), description="brain mask", is_label=True),
            probability=volume.with_array(p, description="brain probability"),
            volume_ml=float(mask.sum()) * voxel_ml, max_section_mm2=max_section,
            planes=len(probabilities), native_planes=axis is not None,
            confidence=float(probabilities[predicted].mean()), uncertain_fraction=uncertain)


def extract_brain(volume: Volume, *, device: Device = "cpu", head_mask: np.ndarray | None = None) -> BrainExtraction:
    """Skull-strip ``volume`` with the shipped model (sessions are cached per process)."""
    return SkullStripper(device=device).extract(volume, head_mask)
