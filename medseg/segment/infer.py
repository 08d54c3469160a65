"""CC segmentation of any readable image through onnxruntime (never torch).

- **Localizer** (thick sagittal slices): every slice is resampled onto the network grid (the
  contract's spacing, rows superior->inferior, columns anterior->posterior, crop centred on the
  head), the slices near the head's left-right centre run first, then further rings while one
  could still win. The mid-sagittal slice is the most confident (times a prior on the distance
  from that centre) of those with a plausible CC of at least half the reference, the largest
  plausible CC near that centre (CC_AREA_FRACTION, LR_REFERENCE_MM): never the largest alone,
  since the CC is outlined 5-10 mm beside the midline too. The mask is mapped back onto that
  slice's own pixels.
- **Any axis order**: the slices of a localizer may lie across any array axis (a NIfTI stored
  left-right first), flipped or not (:mod:`medseg.planes`); the stack is viewed with its slice
  axis last and the mask goes back into the input's own array layout.
- **3D volume**: the mid-sagittal plane comes from bilateral symmetry (mirror registration,
  :mod:`medseg.preprocess.midsagittal`); the CC only refines it: planes along its normal (+-6 mm)
  are scored by CC confidence times a Gaussian of their offset (SD 2.5 mm), never by area (the
  mask grows off the midline, and an over-segmented mask is the largest), and planes without a
  plausible CC are out. The offset (mm) from the symmetry plane is reported (and the angle
  between the two planes, 0 while all candidates are parallel to it), and a plane at the edge of
  the search, or over 2 mm off, is flagged in ``warnings``. The plane is reported (point + normal) and
  the mask written into the volume's grid.
- **Canonical pose**: once the CC's plane is chosen, the plane is sampled again with its in-plane
  axes turned so that the CC's provisional axis (the positioning ``final`` line) is horizontal,
  and the network runs once more. Whatever the head's pitch, the network then sees the CC in
  nearly the same pose, so the angles follow a rotation of the head (rotation equivariance) far
  more closely than one pass of a CNN that is only approximately equivariant.
- Predictions that cannot be a mid-sagittal CC (fragmented, implausible area, not elongated) are
  refused with :class:`NoCCFoundError` and the reason.

Every value of the network grid comes from the model's contract (``model.json``, read as a
:class:`~medseg.infer.contract.ModelContract`): size, spacing, the crop's distance below the top of
the head, the normalisation percentiles (over each plane's Otsu foreground, as in training) and the
probability threshold. Only planes that show head (whole-series head mask) are considered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.cc_line import localize
from medseg.errors import MedsegError, NoCCFoundError
from medseg.geometry import Plane
from medseg.infer.grid import VolumeLookup, crop_centre_from_sampler, grid_plane, network_frame, plane_grid
from medseg.infer.normalize2d import has_anatomy, normalize_slice
from medseg.infer.runtime import Device, PlaneModel, Precision, Predictor
from medseg.masks import largest_component
from medseg.planes import left_right_axis, plane_of_normal, slice_axis, slice_normal
from medseg.preprocess.midsagittal import SEARCH_DEG, midsagittal_plane, plane_turn
from medseg.preprocess.normalize import foreground_mask
from medseg.segment.cc_alone import corpus_callosum_alone
from medseg.volume import Volume

log = logging.getLogger(__name__)

LR_PRIOR_SD_MM = 8.0  # how far from the head's left-right centre the midline may plausibly lie
# Localizer slices further than this from the head's left-right centre are not run through the
# network: their prior is below exp(-4.5) = 1 %, so they could only win against slices with
# 90 times less CC. This keeps a 35-slice localizer to ~12 network planes (the latency budget).
LR_SEARCH_MM = 3.0 * LR_PRIOR_SD_MM
# The slices within this distance are run first, in one batch; further ones only while their prior
# still lets them win (see CCSegmenter._segment_localizer): ~7 network planes of a 35 x 4 mm
# localizer instead of 12.
LR_FIRST_MM = 1.5 * LR_PRIOR_SD_MM
# A network trained on the CC alone outlines it about as large 5-10 mm to either side of the
# midline as on it (its training target on a plane beside the midline is the midline's CC:
# Subject.cc_target), so area x confidence does not mark the midline: on a raw 35 x 4 mm localizer
# a fine-tuned CC-alone network's largest CC lay in the slice 3 mm lateral, whose plan was
# 2.75 deg off. Its confidence (mean probability inside the mask) still peaks at the midline. The
# slice chosen is the most confident (times the prior) of those with a CC of plausible area at
# least this fraction of the reference: the largest plausible CC of the slices within
# LR_REFERENCE_MM of the head's centre (always searched; a far lateral over-segmentation cannot
# raise the bar). The 3D path, too, scores planes by confidence and never by area.
CC_AREA_FRACTION = 0.5
LR_REFERENCE_MM = LR_FIRST_MM
# 3D volumes: the CC only refines the symmetry plane. Candidate planes along its normal are scored
# by CC confidence times a Gaussian of their offset (never by area: the mask grows off the midline
# and an over-segmented mask is the largest), so a plane 1.5 mm off needs 1.2x the symmetry plane's
# confidence and one 3 mm off twice it; in practice the CC moves the plane only when the symmetry
# plane shows no plausible CC.
SYMMETRY_SEARCH_MM = 6.0
SYMMETRY_STEP_MM = 1.5
SYMMETRY_PRIOR_SD_MM = 2.5
SYMMETRY_FLAG_MM = 2.0  # a plane moved further than this from the symmetry plane is flagged
MIN_CC_AREA_MM2 = 120.0  # below this no CC is reported
# The CC-alone step keeps 0.65-0.73 of the network's mask on the held-out subjects and the XA30
# T1; much less means it cut the CC itself (CCSegmenter.alone).
CC_ALONE_MIN_FRACTION = 0.4
# When that step fails, it is tried again with an opening of CC_THIN_OPENING_MM: the standard
# opening (2 px at 1.25 mm) also cuts a CC body whose bright core is under ~6 mm thick, as in the
# partial-volumed thick slabs of a raw localizer, leaving the genu alone. That second result is
# taken only if it is plausible and moves the plan's angle by at most CC_THIN_MAX_ANGLE_DEG from
# the network's whole mask (whose arc gives the right angles, CCSegmenter.alone); otherwise the
# network's mask is kept, as before.
CC_THIN_OPENING_MM = 1.0
CC_THIN_MAX_ANGLE_DEG = 2.0
# Anatomical plausibility of a mid-sagittal CC (adults ~400-1200 mm2, children from ~250 mm2).
# Elongation = long/short side of the minimum-area box; the box spans the arch's height, so real
# CCs measure 2.35-2.87 (FreeSurfer labels of the 7 training/validation subjects): 1.8 leaves margin.
PLAUSIBLE_AREA_MM2 = (250.0, 1800.0)
MIN_ELONGATION = 1.8
MIN_LARGEST_COMPONENT = 0.7
CANONICAL_SMOOTHING_MM = 3.5  # outline smoothing of the provisional line (as positioning uses)


def is_localizer(volume: Volume) -> bool:
    """What :meth:`CCSegmenter.segment` treats as a localizer by default: sagittal slices >= 2.5 mm
    apart, or fewer than 40 of them."""
    axis = slice_axis(volume.affine, volume.spatial_shape)
    sagittal = plane_of_normal(slice_normal(volume.affine, axis)) == "sag"
    return sagittal and (volume.spacing[axis] >= 2.5 or volume.shape[axis] < 40)


def localizer_search_slab(volume: Volume, head: np.ndarray, margin: int = 1) -> tuple[int, int] | None:
    """(first, stop) along the slice axis of the slices a localizer's CC search reads (those within
    :data:`LR_SEARCH_MM` of the head's left-right centre), widened by ``margin`` slices; None for
    an image segmented as a 3D volume. Earlier stages (N4) may then work on this slab only."""
    if not is_localizer(volume):
        return None
    axis = slice_axis(volume.affine, volume.spatial_shape)
    normal = slice_normal(volume.affine, axis)
    head_centre = volume.world_coordinates(np.argwhere(head).mean(axis=0)[None])[0]
    n = volume.shape[axis]
    index = np.zeros((n, 3))
    index[:, :] = [(s - 1) / 2 for s in volume.spatial_shape]
    index[:, axis] = np.arange(n)
    offsets = np.abs((volume.world_coordinates(index) - head_centre) @ normal)
    near = np.flatnonzero(offsets <= LR_SEARCH_MM)
    if near.size == 0:
        return None
    return max(0, int(near[0]) - margin), min(n, int(near[-1]) + 1 + margin)


@dataclass
class CCSegmentation:
    mask: Volume  # uint8, the input's own grid
    plane: Plane  # the plane the CC lies in (image2d/mask2d pixels -> LPS)
    image2d: np.ndarray  # [y, x]
    mask2d: np.ndarray  # [y, x] bool
    probability2d: np.ndarray
    kind: str  # "localizer" or "volume"
    slice_index: int | None
    midsagittal_point: np.ndarray
    midsagittal_normal: np.ndarray
    area_mm2: float
    confidence: float
    candidates: list[dict] = field(default_factory=list)
    slice_choice: dict = field(default_factory=dict)  # localizer: how the slice was chosen
    # 3D volumes: the plane of bilateral symmetry and how far the chosen plane lies from it.
    symmetry_point: np.ndarray | None = None
    symmetry_normal: np.ndarray | None = None
    symmetry_offset_mm: float | None = None
    symmetry_angle_deg: float | None = None
    warnings: list[str] = field(default_factory=list)


def _network_plane(lookup: VolumeLookup, centre: np.ndarray, normal: np.ndarray, size: int,
                   spacing: float, top_to_centre_mm: float) -> Plane:
    row_dir, col_dir, _ = network_frame(normal)
    crop = crop_centre_from_sampler(lookup.mask, centre, row_dir, col_dir, top_to_centre_mm=top_to_centre_mm)
    return grid_plane(crop, row_dir, col_dir, size, spacing)


def implausibility(mask: np.ndarray, pixel_area_mm2: float) -> str | None:
    """Why a predicted mask cannot be a mid-sagittal CC, or None if it can."""
    import cv2

    largest = largest_component(mask)
    if not largest.any():
        return "empty"
    share = largest.sum() / np.count_nonzero(mask)
    if share < MIN_LARGEST_COMPONENT:
        return f"fragmented prediction (largest part {share:.0%} of it)"
    area = float(largest.sum()) * pixel_area_mm2
    if not PLAUSIBLE_AREA_MM2[0] <= area <= PLAUSIBLE_AREA_MM2[1]:
        return f"area {area:.0f} mm2 outside {PLAUSIBLE_AREA_MM2[0]:.0f}-{PLAUSIBLE_AREA_MM2[1]:.0f}"
    points = np.argwhere(largest).astype(np.float32)
    (_, _), (w, h), _ = cv2.minAreaRect(points)
    if min(w, h) == 0 or max(w, h) / min(w, h) < MIN_ELONGATION:
        return f"not elongated like a CC (box {max(w, h):.0f} x {min(w, h):.0f} px)"
    return None


def _canonical_frame(plane: Plane, probability: np.ndarray, spacing: float, threshold: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(row_dir, col_dir, CC centre) of the in-plane frame in which the CC's provisional
    positioning line is horizontal (columns still run anterior->posterior), or None when the
    prediction cannot be localised."""
    mask = largest_component(probability > threshold)
    if mask.sum() * spacing ** 2 < MIN_CC_AREA_MM2:
        return None
    try:
        final = localize(mask, plane, probability=probability, smoothing_mm=CANONICAL_SMOOTHING_MM,
                         threshold=threshold).final
    except MedsegError:
        return None
    normal = plane.normal / np.linalg.norm(plane.normal)
    posterior = -np.asarray(final.direction_lps, dtype=np.float64)
    posterior -= np.dot(posterior, normal) * normal
    posterior /= np.linalg.norm(posterior)
    _, _, net_normal = network_frame(normal)
    return np.cross(posterior, net_normal), posterior, np.asarray(final.center_mm, dtype=np.float64)


def _angle_between_planes(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (deg) between two planes given by their normals (either sense)."""
    cosine = abs(float(np.dot(a, b))) / float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(min(1.0, cosine))))


def _lr_prior(offset_mm: float) -> float:
    """Prior of a localizer slice ``offset_mm`` from the head's left-right centre."""
    return float(np.exp(-0.5 * (offset_mm / LR_PRIOR_SD_MM) ** 2))


def _most_confident(scored: dict[int, tuple[float, float]], offsets: list[float]
                    ) -> tuple[int | None, dict[int, float], float]:
    """(slice, scores, area reference) of the localizer slice to choose from ``scored`` (slice ->
    (CC area mm2, confidence)). A slice qualifies when its area is plausible and at least
    CC_AREA_FRACTION of the reference, the largest plausible area within LR_REFERENCE_MM of the
    head's centre (of all scored slices when none there is plausible); ``scores`` holds the
    confidence x prior of each qualifying slice, and the slice is the highest (None when none
    qualifies)."""
    low, high = PLAUSIBLE_AREA_MM2
    plausible = {k: area for k, (area, _) in scored.items() if low <= area <= high}
    near = [area for k, area in plausible.items() if abs(offsets[k]) <= LR_REFERENCE_MM]
    reference = max(near or list(plausible.values()) or [0.0])
    scores = {k: scored[k][1] * _lr_prior(offsets[k])
              for k, area in plausible.items() if area >= CC_AREA_FRACTION * reference}
    return (max(scores, key=scores.__getitem__) if scores else None), scores, reference


def _score(probability: np.ndarray, spacing: float, threshold: float) -> tuple[float, float]:
    cc = probability > threshold
    if not cc.any():
        return 0.0, 0.0
    return float(cc.sum()) * spacing ** 2, float(probability[cc].mean())


class CCSegmenter(PlaneModel):
    """Segment the CC with a shipped ONNX model (``models/<name>.onnx`` + ``.json``)."""

    def __init__(self, runtime: Predictor | None = None, *, name: str = "cc_attention_unet",
                 device: Device = "cpu", precision: Precision = "fp32", cc_alone: bool | None = None):
        super().__init__(runtime, name, device, precision)
        # Reduce the prediction to the CC alone by rule (medseg.segment.cc_alone)? By default only
        # for a network trained on FreeSurfer's label as it is: one trained on the cleaned label
        # already outlines the CC alone, and the rule run on it again cuts into the CC itself.
        trained_alone = self.runtime.contract.training.trained_on_cc_alone
        self.cc_alone = (not trained_alone) if cc_alone is None else cc_alone

    # -- shared --------------------------------------------------------------------------------
    def series_values(self, volume: Volume, head: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw float32 array, head mask) of the whole series; planes are normalised one by one
        when they are run (:meth:`_predict`)."""
        head = foreground_mask(volume) if head is None else head
        values = np.asarray(volume.array, dtype=np.float32)
        if values.ndim == 4:
            values = values[..., 0]
        return values, head

    def slice_planes(self, volume: Volume, head: np.ndarray, slices: list[int] | None = None) -> list[Plane]:
        """The network plane (grid on the slice's plane, crop centred on the head) of each slice
        (or of the given ``slices``)."""
        lookup = VolumeLookup(volume, np.zeros(1, np.float32), head)
        normal = np.cross(volume.affine[:3, 0], volume.affine[:3, 1])
        planes = []
        for k in (range(volume.shape[2]) if slices is None else slices):
            centre = volume.world_coordinates([[(volume.shape[0] - 1) / 2, (volume.shape[1] - 1) / 2, k]])[0]
            planes.append(_network_plane(lookup, centre, normal, self.size, self.spacing, self.top_to_centre_mm))
        return planes

    def plane_points(self, plane: Plane) -> np.ndarray:
        """LPS points (size x size x 3) of a network plane's grid."""
        return plane_grid(plane, self.size)

    def _predict(self, images: list[np.ndarray]) -> np.ndarray:
        """CC probabilities of raw network-grid planes (normalised here, as in training). Planes
        without anatomy (featureless foreground) are not run and get probability 0."""
        probabilities = np.zeros((len(images), self.size, self.size), np.float32)
        usable = [i for i, image in enumerate(images) if has_anatomy(image)]
        if usable:
            batch = np.stack([normalize_slice(images[i], self.percentiles) for i in usable])[:, None].astype(np.float32)
            probabilities[usable] = self.runtime.probabilities(batch)
        return probabilities

    def canonical_pass(self, lookup: VolumeLookup, plane: Plane, probability: np.ndarray):
        """(plane, image, probability) of a second pass in the CC's canonical pose (see the
        module docstring), or None (keep the first pass) when the first pass cannot be localised
        or the second pass is not a plausible CC while the first one is."""
        frame = _canonical_frame(plane, probability, self.spacing, self.threshold)
        if frame is None:
            return None
        row_dir, col_dir, centre = frame
        crop = crop_centre_from_sampler(lookup.mask, centre, row_dir, col_dir,
                                        top_to_centre_mm=self.top_to_centre_mm)
        canonical = grid_plane(crop, row_dir, col_dir, self.size, self.spacing)
        image = lookup.image(plane_grid(canonical, self.size))
        second = self._predict([image])[0]
        pixel_area = self.spacing ** 2
        if (implausibility(second > self.threshold, pixel_area)
                and not implausibility(probability > self.threshold, pixel_area)):
            log.warning("canonical second pass implausible; keeping the first pass")
            return None
        return canonical, image, second

    def alone(self, image: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, str | None]:
        """(probability, warning): the probability with what is not the CC alone (fornix, septum,
        ventricle CSF under the body; :func:`corpus_callosum_alone`) held at or below the
        threshold, the removed part's rim keeping its soft values for the outline smoothing.
        ``image``/``probability`` on a network plane (rows inferior, columns posterior).

        When the rule leaves no plausible CC (or under CC_ALONE_MIN_FRACTION of the network's
        mask) while the network's mask is plausible, it is run again with a thinner opening
        (CC_THIN_OPENING_MM: the thick slabs of a raw localizer thin the CC body's bright core,
        which the standard opening then cuts, leaving the genu); that result must be plausible
        and keep the plan's angle within CC_THIN_MAX_ANGLE_DEG of the network's whole mask.
        Failing that, the network's mask is kept and the warning says so: the angles from the
        whole arc are the right ones; its area and thickness include the fornix."""
        if not self.cc_alone:
            return probability, None
        mask = largest_component(probability > self.threshold)
        alone = corpus_callosum_alone(mask, image, self.spacing)
        pixel_area = self.spacing ** 2
        network_implausible = implausibility(mask, pixel_area) is not None
        if alone.sum() * pixel_area < MIN_CC_AREA_MM2 and network_implausible:
            return probability, None  # nothing CC-like at all: the gate that follows decides
        reason = self._alone_problem(alone, mask)
        if reason and not network_implausible:
            thin = corpus_callosum_alone(mask, image, self.spacing, opening_mm=CC_THIN_OPENING_MM)
            thin_reason = self._alone_problem(thin, mask) or self._angle_change(thin, mask)
            if thin_reason is None:
                log.info("CC alone with a thinner opening (the standard one: %s)", reason)
                alone = thin
            else:
                warning = (f"the CC-alone step left no plausible CC ({reason}; with a thinner "
                           f"opening: {thin_reason}); the network's mask is kept: the angles hold, "
                           f"area and thickness include the fornix ({mask.sum() * pixel_area:.0f} mm2)")
                log.warning("%s", warning)
                return probability, warning
        rim = ndimage.binary_dilation(alone)
        return np.where(alone, probability, np.minimum(probability, self.threshold) * rim).astype(np.float32), None

    def _alone_problem(self, alone: np.ndarray, mask: np.ndarray) -> str | None:
        """Why a CC-alone result of the network's ``mask`` is not a CC, or None."""
        if alone.sum() < CC_ALONE_MIN_FRACTION * mask.sum():
            return f"kept {alone.sum() / max(mask.sum(), 1):.0%} of the network's mask"
        return implausibility(alone, self.spacing ** 2)

    def _angle_change(self, alone: np.ndarray, mask: np.ndarray) -> str | None:
        """Why ``alone`` would move the plan away from the network's whole ``mask`` (the final
        angle, as positioning fits it, more than CC_THIN_MAX_ANGLE_DEG apart), or None."""
        plane = Plane(np.zeros(3), np.array([0.0, self.spacing, 0.0]), np.array([0.0, 0.0, -self.spacing]))
        try:
            angles = [localize(m, plane, smoothing_mm=CANONICAL_SMOOTHING_MM).final.angle_deg
                      for m in (alone, mask)]
        except MedsegError as error:
            return f"no plan from it ({error})"
        change = abs((angles[0] - angles[1] + 90) % 180 - 90)
        if change > CC_THIN_MAX_ANGLE_DEG:
            return f"plan angle {change:.1f} deg from the network's mask"
        return None

    # -- entry point ---------------------------------------------------------------------------
    def segment(self, volume: Volume, *, localizer: bool | None = None,
                head_mask: np.ndarray | None = None) -> CCSegmentation:
        """Segment ``volume``; ``localizer`` defaults to: sagittal with slices >= 2.5 mm apart or
        fewer than 40 slices. ``head_mask`` (from :func:`foreground_mask`) saves recomputing it."""
        axis = slice_axis(volume.affine, volume.spatial_shape)  # any array axis order, any flip
        sagittal = plane_of_normal(slice_normal(volume.affine, axis)) == "sag"
        if localizer is None:
            localizer = sagittal and (volume.spacing[axis] >= 2.5 or volume.shape[axis] < 40)
        values, head = self.series_values(volume, head_mask)
        if not localizer:
            return self._segment_volume(volume, VolumeLookup(volume, values, head, outside=self.outside))
        if not sagittal:  # told it is a localizer: its slices are the left-right axis' planes
            axis = left_right_axis(volume.affine)[0]
        if axis == 2:
            return self._segment_localizer(volume, VolumeLookup(volume, values, head, outside=self.outside))
        # Slices across another array axis (NIfTI stored LR-first, ...): the same voxels with the
        # slice axis last, then the mask back into the input's own array layout.
        order = tuple(a for a in range(3) if a != axis) + (axis,)
        stacked = volume.permute_axes(order)
        moved = order + ((3,) if values.ndim == 4 else ())
        result = self._segment_localizer(stacked, VolumeLookup(
            stacked, np.ascontiguousarray(np.transpose(values, moved)),
            np.ascontiguousarray(np.transpose(head, order)), outside=self.outside))
        back = tuple(int(a) for a in np.argsort(order))
        result.mask = volume.with_array(np.ascontiguousarray(np.transpose(result.mask.array, back)),
                                        description="corpus callosum", is_label=True)
        return result

    # -- localizer -----------------------------------------------------------------------------
    def _segment_localizer(self, volume: Volume, lookup: VolumeLookup) -> CCSegmentation:
        n = volume.shape[2]
        slice_normal = np.cross(volume.affine[:3, 0], volume.affine[:3, 1])
        slice_normal /= np.linalg.norm(slice_normal)
        head_centre = volume.world_coordinates(np.argwhere(lookup.head).mean(axis=0)[None])[0]
        head_area = lookup.head.sum(axis=(0, 1))
        offsets = []
        for k in range(n):
            centre = volume.world_coordinates([[(volume.shape[0] - 1) / 2, (volume.shape[1] - 1) / 2, k]])[0]
            offsets.append(float(np.dot(centre - head_centre, slice_normal)))
        in_head = head_area > 0.05 * head_area.max()
        eligible = sorted((k for k in range(n) if in_head[k] and abs(offsets[k]) <= LR_SEARCH_MM),
                          key=lambda k: abs(offsets[k]))
        planes: dict[int, Plane] = {}
        probabilities: dict[int, np.ndarray] = {}
        scored: dict[int, tuple[float, float]] = {}  # slice -> (CC area mm2, confidence)

        def run(batch: list[int]) -> None:
            planes.update(zip(batch, self.slice_planes(volume, lookup.head, batch)))
            predicted = self._predict([lookup.image(plane_grid(planes[k], self.size)) for k in batch])
            for k, probability in zip(batch, predicted):
                probabilities[k] = probability
                scored[k] = _score(probability, self.spacing, self.threshold)

        # Branch and bound over the distance from the head's centre: the slices near it first, then
        # further ones only while one could still win. A slice's score is confidence x prior and
        # confidence <= 1, so once every slice within LR_REFERENCE_MM (which set the area
        # reference) is scored, a slice whose prior is at most the best score cannot win.
        remaining = list(eligible)
        batch = [k for k in remaining if abs(offsets[k]) <= LR_FIRST_MM] or remaining[:1]
        bounds: dict[int, str] = {}
        while batch:
            run(batch)
            remaining = [k for k in remaining if k not in scored]
            if not remaining:
                break
            leader, qualifying, _ = _most_confident(scored, offsets)
            nearest = abs(offsets[remaining[0]])
            if leader is not None and nearest > LR_REFERENCE_MM and _lr_prior(nearest) <= qualifying[leader]:
                for k in remaining:
                    bounds[k] = (f"cannot beat slice {leader}: prior {_lr_prior(offsets[k]):.3f} "
                                 f"<= its score {qualifying[leader]:.3f}")
                break
            ring = nearest + 0.5 * float(volume.spacing[2])
            batch = [k for k in remaining if abs(offsets[k]) <= ring]
        if not scored:
            raise NoCCFoundError(f"no corpus callosum found in {n} slices (no slice shows head within "
                                 f"{LR_SEARCH_MM:g} mm of the head's left-right centre)")
        chosen, qualifying, reference = _most_confident(scored, offsets)
        # none qualifies: the largest area x confidence x prior, refused below with its reason
        best = chosen if chosen is not None else max(
            scored, key=lambda k: scored[k][0] * scored[k][1] * _lr_prior(offsets[k]))
        candidates: list[dict] = []
        for k in range(n):
            entry: dict[str, object] = {"slice": k, "offset_from_head_centre_mm": round(offsets[k], 2)}
            if k not in scored:
                entry["skipped"] = ("no head in this slice" if not in_head[k] else bounds[k] if k in bounds else
                                    f"over {LR_SEARCH_MM:g} mm from the head's left-right centre")
                candidates.append({**entry, "score": 0.0})
                continue
            area, confidence = scored[k]
            candidates.append({**entry, "cc_area_mm2": round(area, 1), "confidence": round(confidence, 4),
                               "score": round(qualifying.get(k, 0.0), 4)})
        slice_choice = {"rule": "highest confidence x prior among plausible areas >= "
                                f"{CC_AREA_FRACTION:g} x the reference", "slice": best,
                        "reference_area_mm2": round(reference, 1)}
        area, confidence = round(scored[best][0], 1), round(scored[best][1], 4)
        if area < MIN_CC_AREA_MM2:
            raise NoCCFoundError(f"no corpus callosum found in {n} slices (best: slice {best}, "
                                 f"{area:.0f} mm2, confidence {confidence:.2f})")
        net, net_probability = planes[best], probabilities[best]
        net_image = None
        refined = self.canonical_pass(lookup, net, net_probability)
        if refined is not None:
            net, net_image, net_probability = refined
        if net_image is None:
            net_image = lookup.image(plane_grid(net, self.size))
        net_probability, alone_warning = self.alone(net_image, net_probability)
        # Back onto the chosen slice's own pixels.
        native = Plane.from_volume_slice(volume, best)
        xs, ys = np.meshgrid(np.arange(volume.shape[0]), np.arange(volume.shape[1]))
        world = native.to_patient(np.column_stack([xs.ravel(), ys.ravel()]))
        rel = world - net.origin
        cols = rel @ net.x_vec / np.dot(net.x_vec, net.x_vec)
        rows = rel @ net.y_vec / np.dot(net.y_vec, net.y_vec)
        probability = ndimage.map_coordinates(net_probability, np.vstack([rows, cols]), order=1,
                                              mode="constant").reshape(ys.shape)
        reason = implausibility(net_probability > self.threshold, self.spacing ** 2)
        if reason:
            raise NoCCFoundError(f"no plausible corpus callosum in {n} slices (slice {best}: {reason})")
        mask2d = largest_component(probability > self.threshold)
        mask = np.zeros(volume.shape[:3], np.uint8)
        mask[:, :, best] = mask2d.T
        image2d = np.asarray(volume.array, dtype=np.float32)[..., best] if volume.array.ndim == 3 \
            else np.asarray(volume.array, dtype=np.float32)[:, :, best, 0]
        return CCSegmentation(
            mask=volume.with_array(mask, description="corpus callosum", is_label=True),
            plane=native, image2d=image2d.T, mask2d=mask2d, probability2d=probability,
            kind="localizer", slice_index=best, midsagittal_point=native.origin,
            midsagittal_normal=native.normal, area_mm2=float(mask2d.sum()) * native.pixel_area_mm2,
            confidence=confidence, candidates=candidates, slice_choice=slice_choice,
            warnings=[alone_warning] if alone_warning else [])

    # -- 3D volume -----------------------------------------------------------------------------
    def _evaluate_planes(self, lookup: VolumeLookup, poses: list[tuple[np.ndarray, np.ndarray]]):
        planes = [_network_plane(lookup, c, n, self.size, self.spacing, self.top_to_centre_mm) for c, n in poses]
        images = [lookup.image(plane_grid(p, self.size)) for p in planes]
        probabilities = self._predict(images)
        scores = [_score(p, self.spacing, self.threshold) for p in probabilities]
        return planes, images, probabilities, scores

    def _segment_volume(self, volume: Volume, lookup: VolumeLookup) -> CCSegmentation:
        point, normal = midsagittal_plane(volume, lookup.head)
        symmetry_point, symmetry_normal = point, normal
        candidates: list[dict[str, object]] = [{"stage": "symmetry", "point": [round(float(v), 2) for v in point],
                       "normal": [round(float(v), 4) for v in normal]}]
        steps = int(round(SYMMETRY_SEARCH_MM / SYMMETRY_STEP_MM))
        offsets = np.arange(-steps, steps + 1) * SYMMETRY_STEP_MM
        poses = [(point + o * normal, normal) for o in offsets]
        planes, images, probabilities, scores = self._evaluate_planes(lookup, poses)
        values, reasons = [], []
        for offset, probability_i, (a, conf) in zip(offsets, probabilities, scores):
            reason = ("empty" if a < MIN_CC_AREA_MM2 else
                      implausibility(probability_i > self.threshold, self.spacing ** 2))
            prior = float(np.exp(-0.5 * (offset / SYMMETRY_PRIOR_SD_MM) ** 2))
            values.append(conf * prior if reason is None else 0.0)
            reasons.append(reason)
            candidates.append({"stage": "cc offset", "offset_mm": round(float(offset), 2),
                               "cc_area_mm2": round(a, 1), "confidence": round(conf, 4),
                               "score": round(values[-1], 4),
                               **({"implausible": reason} if reason else {})})
        best = int(np.argmax(values))
        (centre, normal), plane, image, probability = poses[best], planes[best], images[best], probabilities[best]
        area, confidence = scores[best]
        if values[best] <= 0:
            centre_reason = reasons[steps]
            raise NoCCFoundError("no plausible corpus callosum within "
                                 f"{SYMMETRY_SEARCH_MM:.0f} mm of the symmetry plane "
                                 f"(on the symmetry plane: {centre_reason})")
        warnings = []
        yaw, roll = plane_turn(symmetry_normal)
        if max(abs(yaw), abs(roll)) >= SEARCH_DEG:
            warnings.append(f"symmetry plane turned {yaw:+.1f} deg (yaw) and {roll:+.1f} deg (roll) from the "
                            f"patient's left-right axis, beyond the +-{SEARCH_DEG:.0f} deg search: check the plane")
        if best in (0, len(offsets) - 1):
            warnings.append(f"mid-sagittal plane chosen at the edge of the +-{SYMMETRY_SEARCH_MM:.0f} mm "
                            f"search ({offsets[best]:+.1f} mm from the symmetry plane): the symmetry "
                            "plane and the CC disagree; check the plane")
        elif abs(offsets[best]) > SYMMETRY_FLAG_MM:
            warnings.append(f"mid-sagittal plane {offsets[best]:+.1f} mm from the symmetry plane "
                            f"(on the symmetry plane: {reasons[steps] or 'a less confident CC'})")
        for warning in warnings:
            log.warning("%s", warning)
        refined = self.canonical_pass(lookup, plane, probability)
        if refined is not None:
            plane, image, probability = refined
        probability, alone_warning = self.alone(image, probability)
        if alone_warning:
            warnings.append(alone_warning)
        area, confidence = _score(probability, self.spacing, self.threshold)
        mask2d = largest_component(probability > self.threshold)
        # Into the volume's own grid: every voxel hit by the CC pixels (sampled at 1/3 pixel).
        rows, cols = np.nonzero(ndimage.zoom(mask2d.astype(np.uint8), 3, order=0))
        points = plane.to_patient(np.column_stack([cols / 3.0 - 1 / 3, rows / 3.0 - 1 / 3]))
        index = np.rint(volume.voxel_coordinates(points)).astype(int)
        inside = np.all((index >= 0) & (index < np.array(volume.shape[:3])), axis=1)
        mask = np.zeros(volume.shape[:3], np.uint8)
        mask[tuple(index[inside].T)] = 1
        return CCSegmentation(
            mask=volume.with_array(mask, description="corpus callosum", is_label=True),
            plane=plane, image2d=image, mask2d=mask2d, probability2d=probability, kind="volume",
            slice_index=None, midsagittal_point=centre, midsagittal_normal=normal,
            area_mm2=area, confidence=confidence, candidates=candidates,
            symmetry_point=symmetry_point, symmetry_normal=symmetry_normal,
            symmetry_offset_mm=float(np.dot(centre - symmetry_point, symmetry_normal)),
            symmetry_angle_deg=_angle_between_planes(plane.normal, symmetry_normal), warnings=warnings)
