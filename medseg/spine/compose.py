"""Composing stations into one image in patient space.

Stages (each station in turn, outward from the reference station):
1. overlap with its already placed neighbour (head-foot extent in patient space);
2. registration refinement in that overlap (translation, optionally rigid; bounded);
3. intensity factor from the registered overlap (robust gain), chained to the reference;
then a smooth head-foot gain profile per station is fitted jointly on all overlaps
(:mod:`medseg.spine.field`) and kept when it matches the overlaps clearly better than the
constant gains; every station is resampled once onto the union grid and the stations are blended.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np

from medseg import planes
from medseg.errors import InputError
from medseg.spine.blend import BlendMode, feather, multiband
from medseg.spine.field import (
    StationProfile,
    constant_profiles,
    fit_profiles,
    mismatch,
    overlap_rows,
    profile_is_better,
)
from medseg.spine.grid import coverage_and_ramp, match_point_spread, resample_station, union_grid
from medseg.spine.intensity import IntensityMode, fit_intensity, ncc
from medseg.spine.register import (
    Check,
    Registration,
    check_correction,
    moved,
    ncc_noise,
    register_overlap,
    supported_translation,
    translated,
    with_translation,
)
from medseg.spine.stations import check_compatible, head_foot_extent, order_head_to_foot
from medseg.volume import Volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StitchOptions:
    """How to compose.

    Attributes:
        register: refine station positions by registration in the overlaps.
        rigid: also search rotations (default: translation only).
        max_shift_mm: the plausible table error: a correction that moves a station further than
            this from its DICOM position is rejected (the station keeps its DICOM position and the
            report says why). The correction is relative to the reference station, so it holds
            two table errors (the station's and the reference's), each up to about 4 mm.
        reference: the station that keeps its geometry: ``"head"``, ``"foot"`` or an index in
            head-to-foot order.
        intensity: ``"gain"`` (a smooth head-foot gain profile per station, fitted on all
            overlaps; one robust gain per station when the profile does not match the overlaps
            clearly better), ``"constant"`` (one robust gain per station), ``"linear"`` (gain +
            offset) or ``"none"``.
        blend: ``"feather"`` (linear ramps) or ``"multiband"``.
        spacing_mm: output voxel size; default: finest in-plane spacing, reference slice spacing.
        backend: ``"sitk"`` (CPU), ``"torch"`` (grid_sample) or ``"auto"`` (torch on CUDA when a
            GPU is present, else SimpleITK).
        device: torch device for the torch backend (``"cuda"``, ``"cpu"``); auto picks CUDA.
        min_overlap_mm: stations overlapping less than this are not registered/matched and the
            gap or thin overlap is flagged.
        metric: registration similarity: ``"local"`` (ANTs neighbourhood correlation: robust to
            the coil shading that differs between stations; on cut PAM50 stations it left
            0.01-0.04 mm head-foot error where global correlation left 0.3-0.5 mm), ``"global"``
            (normalised correlation) or ``"mi"`` (Mattes mutual information).
    """

    register: bool = True
    rigid: bool = False
    max_shift_mm: float = 8.0
    reference: Literal["head", "foot"] | int = "head"
    intensity: IntensityMode = "gain"
    blend: BlendMode = "feather"
    spacing_mm: tuple[float, float, float] | None = None
    backend: Literal["auto", "sitk", "torch"] = "auto"
    device: str = "auto"
    min_overlap_mm: float = 5.0
    metric: Literal["local", "global", "mi"] = "local"


@dataclass
class StationReport:
    index: int
    description: str
    series_uid: str
    shape: list[int]
    spacing_mm: list[float]
    head_foot_extent_mm: list[float]
    overlap_with_neighbour_mm: float | None = None
    correction_mm: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    rotation_deg: float = 0.0
    registration: str = "reference"
    gain: float = 1.0
    offset: float = 0.0
    ncc_before: float | None = None
    ncc_after: float | None = None  # of the placement kept (equals ncc_before when rejected)
    ncc_registered: float | None = None  # of the registration's proposal, kept or not
    ncc_noise: float | None = None  # the margin a correction had to beat (register.ncc_noise)
    proposed_correction_mm: list[float] | None = None
    registration_check: str = ""  # why the proposal was applied or not
    registration_metric: str = ""  # the metric of the last proposal checked
    dropped_axes: list[str] = field(default_factory=list)  # axis parts the overlap did not support
    intensity_profile: dict | None = None  # the head-foot gain profile applied (field.StationProfile)


@dataclass
class CompositeResult:
    volume: Volume
    stations: list[StationReport]
    reference_index: int
    overlaps: list[dict]
    gaps: list[dict]
    backend: str
    seconds: dict[str, float]
    intensity: dict = field(default_factory=dict)  # mode, what was applied and why

    def report(self) -> dict:
        """JSON-ready summary: stations, registration offsets, intensity factors, overlap quality."""
        return {
            "schema": "medseg.stitch/1",
            "reference_station": self.reference_index,
            "output": {"shape": list(self.volume.shape),
                       "spacing_mm": [round(float(s), 4) for s in self.volume.spacing],
                       "orientation": self.volume.orientation},
            "stations": [asdict(s) for s in self.stations],
            "overlaps": self.overlaps,
            "gaps": self.gaps,
            "intensity": self.intensity,
            "backend": self.backend,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def head_foot_axis(volume: Volume) -> int:
    """The voxel axis closest to the patient's head-foot (z) axis (:mod:`medseg.planes`)."""
    return planes.head_foot_axis(volume.affine)


def _crop_to_z(volume: Volume, lo: float, hi: float) -> Volume | None:
    """The part of ``volume`` whose voxel centres lie within lo <= z <= hi (no resampling)."""
    axis = head_foot_axis(volume)
    n = volume.spatial_shape[axis]
    index = np.zeros((n, 3))
    index[:, axis] = np.arange(n)
    # z along that axis at the grid's centre line of the other axes
    centre = (np.array(volume.spatial_shape) - 1) / 2.0
    points = np.tile(centre, (n, 1))
    points[:, axis] = np.arange(n)
    z = volume.world_coordinates(points)[:, 2]
    keep = np.nonzero((z >= lo) & (z <= hi))[0]
    if keep.size < 3:
        return None
    start, stop = int(keep.min()), int(keep.max()) + 1
    slicer = [slice(None)] * 3
    slicer[axis] = slice(start, stop)
    offset = np.zeros(3)
    offset[axis] = start
    affine = volume.affine.copy()
    affine[:3, 3] = volume.world_coordinates([offset])[0]
    return Volume(np.asarray(volume.array)[tuple(slicer)], affine, volume.meta)


def _gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible, checked without importing torch (a CPU-only node never
    pays torch's import): the driver's device nodes or its /proc entry."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidia0") or bool(glob.glob("/proc/driver/nvidia/gpus/*"))


def _resolve_backend(options: StitchOptions) -> tuple[str, str]:
    backend, device = options.backend, options.device
    if backend in ("auto", "torch") and device == "auto":
        cuda = False
        if _gpu_visible() and importlib.util.find_spec("torch") is not None:
            import torch  # only when a GPU may use it: torch is not on the CPU inference path

            cuda = torch.cuda.is_available()
        device = "cuda" if cuda else "cpu"
    if backend == "auto":
        backend = "torch" if device == "cuda" else "sitk"
    return backend, device


def _rotation_angle(rotation: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))


def _core(inside: np.ndarray, margin: int = 2) -> np.ndarray:
    """``inside`` without its outer ``margin`` voxels."""
    from scipy import ndimage

    return ndimage.binary_erosion(inside, iterations=margin)


def _place_station(station: Volume, neighbour: Volume, neighbour_gain: tuple[float, float],
                   report: StationReport, options: StitchOptions) -> tuple[Volume, tuple[float, float]]:
    """Register and intensity-match ``station`` to its placed ``neighbour``."""
    s_lo, s_hi = head_foot_extent(station.spatial_shape, station.affine)
    n_lo, n_hi = head_foot_extent(neighbour.spatial_shape, neighbour.affine)
    lo, hi = max(s_lo, n_lo), min(s_hi, n_hi)
    report.overlap_with_neighbour_mm = round(hi - lo, 3)
    fixed = _crop_to_z(neighbour, lo, hi) if hi - lo >= options.min_overlap_mm else None
    if fixed is None:
        report.registration = f"not registered: overlap {hi - lo:.1f} mm < {options.min_overlap_mm} mm"
        return station, neighbour_gain
    fixed_values = np.asarray(fixed.array, dtype=np.float32) * neighbour_gain[0] + neighbour_gain[1]
    fixed = fixed.with_array(fixed_values)

    def overlap_values(candidate: Volume) -> tuple[np.ndarray, np.ndarray]:
        values = resample_station(candidate, fixed.spatial_shape, fixed.affine)
        inside, _ = coverage_and_ramp(candidate, fixed.spatial_shape, fixed.affine,
                                      head_foot_axis(candidate))
        return values, inside

    # The check compares the same voxels before and after: those both placements cover, 2 voxels
    # in from the overlap's edges (edge voxels are part interpolated from outside the station,
    # and a 0.2 mm shift alone would change their NCC by far more than any misplacement).
    before_values, before_inside = overlap_values(station)
    report.ncc_before = round(ncc(before_values, fixed_values, _core(before_inside)), 4)
    if options.register:
        placed = _register(station, fixed, fixed_values, overlap_values, before_values, before_inside,
                           report, options)
    else:
        placed = station
        report.registration = "disabled"
    after, inside = overlap_values(placed)
    if report.ncc_registered is None:  # not registered
        report.ncc_after = round(ncc(after, fixed_values, _core(inside)), 4)
    else:  # the placement kept, on the voxels the check compared
        report.ncc_after = report.ncc_registered if placed is not station else report.ncc_before
    # intensities are compared at one point spread (see match_point_spread)
    fixed_matched = match_point_spread(fixed_values, fixed.affine, placed)
    gain, offset = fit_intensity(after, fixed_matched, _core(inside), mode=options.intensity)
    report.gain, report.offset = round(gain, 6), round(offset, 6)
    return placed, (gain, offset)


OverlapValues = Callable[[Volume], tuple[np.ndarray, np.ndarray]]


def _register(station: Volume, fixed: Volume, fixed_values: np.ndarray, overlap_values: OverlapValues,
              before_values: np.ndarray, before_inside: np.ndarray, report: StationReport,
              options: StitchOptions) -> Volume:
    """``station`` moved by the correction the checks accept, or as it is; ``report`` says why.

    ``overlap_values(candidate)`` resamples a placement of the station onto ``fixed`` (the
    neighbour's overlap, its intensities in ``fixed_values``): values and coverage. The configured
    metric proposes first; a proposal the check refuses gets a second opinion from global
    correlation (a local-correlation optimum can lie millimetres off on real anatomy), unless the
    refusal says the DICOM position is as good as any correction. Nothing is applied that the
    checks do not accept: the whole correction (:func:`check_correction`), then each axis's part
    (:func:`supported_translation`), then what is left as a whole again."""
    metrics = [options.metric] + (["global"] if options.metric != "global" else [])
    dicom_ncc = report.ncc_before  # at the DICOM position, on the whole overlap's core
    for metric in metrics:
        registration: Registration = register_overlap(
            fixed, np.ones(fixed.spatial_shape, bool), station,
            max_shift_mm=options.max_shift_mm, rigid=options.rigid, metric=metric)
        # the report describes the last proposal checked, nothing of an earlier one
        report.proposed_correction_mm = [round(float(v), 4) for v in registration.translation_mm]
        report.registration_metric = metric
        report.dropped_axes = []
        report.ncc_before, report.ncc_registered, report.ncc_noise = dicom_ncc, None, None
        if not registration.accepted:
            report.registration = f"rejected: {registration.reason}"
            report.registration_check = registration.reason
            continue
        candidate = moved(station, registration)
        candidate_values, candidate_inside = overlap_values(candidate)
        common = _core(before_inside & candidate_inside)  # the same voxels before and after
        before_ncc = ncc(before_values, fixed_values, common)
        registered_ncc = ncc(candidate_values, fixed_values, common)

        def overlap_ncc(placement: Volume, common: np.ndarray = common) -> float:
            return ncc(overlap_values(placement)[0], fixed_values, common)

        noise = ncc_noise(lambda shift: overlap_ncc(translated(station, shift)))
        report.ncc_before = round(before_ncc, 4)
        check = check_correction(before_ncc, registered_ncc, noise,
                                 float(np.linalg.norm(registration.translation_mm)),
                                 max_shift_mm=options.max_shift_mm)
        if check.accepted:  # then each axis's part on its own
            def corrected_ncc(t: np.ndarray, proposal: Registration = registration) -> float:
                return overlap_ncc(moved(station, with_translation(proposal, t)))

            kept, kept_ncc, dropped = supported_translation(corrected_ncc, registration.translation_mm)
            report.dropped_axes = dropped
            if dropped:
                registration = with_translation(registration, kept)
                if not kept.any() and _rotation_angle(registration.rotation) == 0.0:
                    check = Check(False, "no axis's part of the correction is supported: "
                                         "the DICOM geometry is kept")
                else:
                    candidate = moved(station, registration)
                    registered_ncc = kept_ncc
                    check = check_correction(before_ncc, registered_ncc, noise, float(np.linalg.norm(kept)),
                                             max_shift_mm=options.max_shift_mm)
                check = check._replace(reason=check.reason + "; " + "; ".join(dropped))
        report.ncc_registered, report.ncc_noise = round(registered_ncc, 4), round(noise, 5)
        report.registration = "accepted" if check.accepted else f"rejected: {check.reason}"
        report.registration_check = check.reason
        if check.accepted:
            report.correction_mm = [round(float(v), 4) for v in registration.translation_mm]
            report.rotation_deg = round(_rotation_angle(registration.rotation), 4)
            return candidate
        if check.within_noise:
            break  # the DICOM position is as good as any correction: no second opinion needed
    log.warning("station %d: registration %s", report.index, report.registration)
    return station


def compose(stations: Sequence[Volume], options: StitchOptions = StitchOptions()) -> CompositeResult:
    """Stitch stations (any order) into one Volume on a grid covering all of them.

    A single station is returned unchanged. Stations that do not overlap are placed by their
    DICOM geometry and the gap between them is filled with 0 and flagged in ``gaps``.

    Raises:
        InputError: no stations, mixed orientations, or 4D stations.
    """
    if not stations:
        raise InputError("no stations to compose")
    check_compatible(stations)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ordered = order_head_to_foot(stations)
    count = len(ordered)
    ends: dict[object, int] = {"head": 0, "foot": count - 1}
    reference = ends.get(options.reference, options.reference)
    if not isinstance(reference, int) or not 0 <= reference < count:
        raise InputError(f"reference station {options.reference!r} is not one of 0..{count - 1}")
    reports = [
        StationReport(index=i, description=v.meta.description, series_uid=v.meta.series_uid,
                      shape=list(v.shape), spacing_mm=[round(float(s), 4) for s in v.spacing],
                      head_foot_extent_mm=[round(z, 3) for z in head_foot_extent(v.spatial_shape, v.affine)])
        for i, v in enumerate(ordered)
    ]
    backend, device = _resolve_backend(options)
    if count == 1:
        return CompositeResult(ordered[0], reports, 0, [], [], "none", {"total": 0.0})

    placed: dict[int, Volume] = {reference: ordered[reference]}
    gains: dict[int, tuple[float, float]] = {reference: (1.0, 0.0)}
    order = list(range(reference - 1, -1, -1)) + list(range(reference + 1, count))
    for index in order:
        neighbour = index + 1 if index < reference else index - 1
        placed[index], gains[index] = _place_station(
            ordered[index], placed[neighbour], gains[neighbour], reports[index], options)
    volumes = [placed[i] for i in range(count)]
    profiles, intensity, overlap_mismatch = _intensity_profiles(volumes, gains, reference, reports, options)
    timings["register_and_match"] = time.perf_counter() - start

    t = time.perf_counter()
    shape, affine = union_grid(volumes, placed[reference],
                               options.spacing_mm if options.spacing_mm else None)
    images, weights = [], []
    z_mm = _grid_z(shape, affine) if profiles is not None else None
    for i, volume in enumerate(volumes):
        image = resample_station(volume, shape, affine, backend=backend, device=device)
        inside, ramp = coverage_and_ramp(volume, shape, affine, head_foot_axis(volume))
        if profiles is not None:
            assert z_mm is not None  # set with profiles above
            image = image * profiles[i].multiplier(z_mm).astype(np.float32)
        else:
            gain, offset = gains[i]
            image = image * gain + offset
        images.append(np.where(inside, image, 0).astype(np.float32))
        weights.append(ramp.astype(np.float32))
    timings["resample"] = time.perf_counter() - t

    t = time.perf_counter()
    if options.blend == "multiband":
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        composite, covered = multiband(images, weights, spacing)
    else:
        composite, covered = feather(images, weights)
    timings["blend"] = time.perf_counter() - t

    overlaps = []
    for i in range(count - 1):
        both = (weights[i] > 0) & (weights[i + 1] > 0)
        overlaps.append({"stations": [i, i + 1], "voxels": int(both.sum()),
                         "ncc": round(ncc(images[i], images[i + 1], both), 4) if both.any() else None,
                         "intensity_mismatch": overlap_mismatch[i]})
    gaps = _find_gaps(covered, affine, head_foot_axis(Volume(composite, affine)))
    for gap in gaps:
        log.warning("stations leave a %.1f mm gap (filled with 0)", gap["length_mm"])
    timings["total"] = time.perf_counter() - start
    meta = placed[reference].meta.replace(description="composite", is_label=False)
    result_volume = Volume(composite, affine, meta)
    return CompositeResult(result_volume, reports, reference, overlaps, gaps,
                           backend if backend == "sitk" else f"torch:{device}", timings, intensity)


def _grid_z(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """The LPS z (mm) of every voxel of a grid (a sum of three broadcast 1-D terms), as an array
    that broadcasts to ``shape``: 1-D along the only axis it varies on, when the grid's other
    axes lie in the axial plane (every sagittal or coronal composite)."""
    row = affine[2].astype(np.float32)
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    terms = [row[0] * axes[0][:, None, None], row[1] * axes[1][None, :, None], row[2] * axes[2][None, None, :]]
    total = np.zeros((1, 1, 1), np.float32) + row[3]
    for coefficient, term in zip(row[:3], terms):
        if abs(float(coefficient)) > 1e-9:
            total = total + term
    return total


def _overlap_rows(upper: Volume, lower: Volume, upper_index: int, min_overlap_mm: float):
    """Per head-foot position, the robust log ratio of two placed neighbours in their overlap,
    on the upper station's own voxels (the lower one resampled there; the upper one blurred as
    the interpolation blurs the lower, see match_point_spread),
    2 voxels in from the lower station's edges."""
    u_lo, u_hi = head_foot_extent(upper.spatial_shape, upper.affine)
    l_lo, l_hi = head_foot_extent(lower.spatial_shape, lower.affine)
    lo, hi = max(u_lo, l_lo), min(u_hi, l_hi)
    crop = _crop_to_z(upper, lo, hi) if hi - lo >= min_overlap_mm else None
    if crop is None:
        return overlap_rows(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool),
                            upper=upper_index, lower=upper_index + 1, bin_mm=1.0)
    values = resample_station(lower, crop.spatial_shape, crop.affine)
    inside, _ = coverage_and_ramp(lower, crop.spatial_shape, crop.affine, head_foot_axis(lower))
    bin_mm = float(crop.spacing[head_foot_axis(crop)])
    return overlap_rows(match_point_spread(np.asarray(crop.array), crop.affine, lower), values,
                        _grid_z(crop.spatial_shape, crop.affine), _core(inside),
                        upper=upper_index, lower=upper_index + 1, bin_mm=bin_mm)


def _intensity_profiles(volumes: list[Volume], gains: dict[int, tuple[float, float]], reference: int,
                        reports: list[StationReport], options: StitchOptions
                        ) -> tuple[list[StationProfile] | None, dict, list[dict]]:
    """The gain profiles to apply (None: apply the constant gains/offsets), the intensity report
    and, per overlap, the mismatch left as acquired, with constant gains and as applied."""
    extents = [head_foot_extent(v.spatial_shape, v.affine) for v in volumes]
    rows = [_overlap_rows(volumes[i], volumes[i + 1], i, options.min_overlap_mm)
            for i in range(len(volumes) - 1)]
    raw = constant_profiles([1.0] * len(volumes), extents)
    constant = constant_profiles([gains[i][0] for i in range(len(volumes))], extents)
    before = [mismatch(r, raw) for r in rows]
    with_gains = [mismatch(r, constant) for r in rows]
    intensity: dict = {"mode": options.intensity}
    profiles = None
    if options.intensity == "gain":
        fitted = fit_profiles(rows, extents, reference)
        with_profile = [mismatch(r, fitted) for r in rows]
        use, reason = profile_is_better(with_gains, with_profile, fitted, [r.z_mm.size for r in rows])
        intensity.update(applied="profile" if use else "constant gains", check=reason)
        if use:
            profiles = fitted
            for report, profile in zip(reports, fitted):
                report.gain = round(float(np.exp(profile.log_gain)), 6)
                report.intensity_profile = profile.as_dict()
        else:
            log.info("intensity: %s", reason)
        applied = with_profile if use else with_gains
    else:
        intensity["applied"] = {"constant": "constant gains", "linear": "gains and offsets",
                                "none": "none"}[options.intensity]
        # a log-ratio mismatch is defined for multiplicative corrections only
        applied = with_gains if options.intensity != "linear" else [None] * len(rows)

    def pct(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 3)

    overlap_mismatch = [{"unit": "% (RMS over head-foot positions of the log ratio)",
                         "as_acquired": pct(b), "constant_gains": pct(g), "applied": pct(a),
                         "positions": int(r.z_mm.size)}
                        for b, g, a, r in zip(before, with_gains, applied, rows)]
    return profiles, intensity, overlap_mismatch


def _find_gaps(covered: np.ndarray, affine: np.ndarray, axis: int) -> list[dict]:
    """Runs of head-foot positions that no station covers."""
    other = tuple(a for a in range(3) if a != axis)
    any_cover = np.asarray(covered.any(axis=other))
    spacing = float(np.linalg.norm(affine[:3, axis]))
    gaps, start = [], None
    for index, value in enumerate(list(any_cover) + [True]):
        if not value and start is None:
            start = index
        elif value and start is not None:
            gaps.append({"first_index": start, "last_index": index - 1,
                         "length_mm": round((index - start) * spacing, 3)})
            start = None
    return gaps
