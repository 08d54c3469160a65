"""From frame records to volumes: split a series into stacks, order slices, build the affine.

A series is split where its frames cannot share one grid: different orientation (a 3-plane
localizer), matrix size or pixel spacing, echo, or magnitude/phase component. Within a stack, frames
are sorted by their position along the slice normal; frames that share a position are volumes of a
4D stack (time points, diffusion directions). The slice step is measured from
ImagePositionPatient, never taken from SliceThickness.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from medseg.errors import CorruptFileError, InconsistentSeriesError, InvalidGeometryError, MissingGeometryError
from medseg.io.dicom_headers import DEFAULT_LIMITS, FileHeader, Frame, ScanLimits, open_dataset
from medseg.volume import Volume, VolumeMeta

ORIENTATION_TOLERANCE = 1e-3  # direction-cosine difference under which two frames share a plane
POSITION_TOLERANCE = 0.01  # mm: two slice positions closer than this are the same position
SPACING_TOLERANCE = 0.01  # relative deviation of a slice step from the median step


@dataclass
class Stack:
    """Frames of one series that form one 3D (or 4D) volume, with its geometry."""

    frames: list[Frame]  # sorted: by slice position, then by volume order
    n_slices: int
    n_volumes: int
    affine: np.ndarray | None
    label: str  # "" or e.g. "sag", "e2", "ph" to tell stacks of one series apart
    problems: list[str] = field(default_factory=list)
    error: Exception | None = None  # raised on load: the stack cannot form a volume

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.frames[0]
        shape = (first.cols, first.rows, self.n_slices)
        return shape + ((self.n_volumes,) if self.n_volumes > 1 else ())


def plane_name(iop: tuple[float, ...] | None) -> str:
    """'sag', 'cor' or 'ax' from the slice normal's dominant LPS axis (:mod:`medseg.planes`)."""
    from medseg.planes import plane_of_iop

    return plane_of_iop(iop)


def _cluster_orientations(frames: list[Frame]) -> list[list[Frame]]:
    groups: list[tuple[np.ndarray, list[Frame]]] = []
    for frame in frames:
        iop = np.asarray(frame.iop)
        for reference, members in groups:
            if np.max(np.abs(reference - iop)) < ORIENTATION_TOLERANCE:
                members.append(frame)
                break
        else:
            groups.append((iop, [frame]))
    return [members for _, members in groups]


def _placement(frame: Frame) -> tuple[tuple[float, float, float], tuple[float, ...], tuple[float, float]]:
    """(ImagePositionPatient, ImageOrientationPatient, PixelSpacing) of a frame that has all three
    (:func:`split_series` puts frames without them in a stack of their own that fails to load)."""
    assert frame.ipp is not None and frame.iop is not None and frame.pixel_spacing is not None
    return frame.ipp, frame.iop, frame.pixel_spacing


def geometry_problem(frame: Frame, limits: ScanLimits = DEFAULT_LIMITS) -> str | None:
    """Why a frame's (present) geometry tags cannot describe a real image, or None.

    Checked: PixelSpacing finite and positive (a negative spacing would mirror the image),
    ImageOrientationPatient two unit, orthogonal vectors, ImagePositionPatient finite and within
    ``limits.max_position_mm``.
    """
    frame_ipp, frame_iop, frame_spacing = _placement(frame)
    # Plain floats, not numpy: run once per frame of every scanned series (tens of thousands),
    # where numpy's per-call overhead on 3-vectors was a third of an enhanced file's scan.
    if not all(math.isfinite(s) and 0 < s <= limits.max_pixel_spacing_mm for s in frame_spacing):
        return f"PixelSpacing {list(frame_spacing)} is not a positive size in mm"
    row, col = frame_iop[:3], frame_iop[3:]
    finite = all(math.isfinite(v) for v in frame_iop)
    norms = (math.hypot(*row), math.hypot(*col)) if finite else (math.nan, math.nan)
    if not finite or abs(norms[0] - 1) > 0.01 or abs(norms[1] - 1) > 0.01:
        return (f"ImageOrientationPatient {list(frame_iop)} does not hold two unit vectors "
                f"(lengths {norms[0]:.3g}, {norms[1]:.3g})")
    cosine = sum(r * c for r, c in zip(row, col))
    if abs(cosine) > 0.01:
        return (f"ImageOrientationPatient {list(frame_iop)}: row and column directions are not "
                f"orthogonal (cosine {cosine:.3g})")
    if not all(math.isfinite(v) and abs(v) <= limits.max_position_mm for v in frame_ipp):
        return f"ImagePositionPatient {list(frame_ipp)} lies outside +-{limits.max_position_mm:g} mm"
    return None


def split_series(headers: list[FileHeader], series_name: str,
                 limits: ScanLimits = DEFAULT_LIMITS) -> list[Stack]:
    """Split one series' frames into stacks that each form a volume."""
    frames = [frame for header in headers for frame in header.frames]
    missing = [f for f in frames if f.iop is None or f.ipp is None or f.pixel_spacing is None]
    if missing:
        example = missing[0]
        tags = [
            name
            for name, value in (
                ("ImagePositionPatient", example.ipp),
                ("ImageOrientationPatient", example.iop),
                ("PixelSpacing", example.pixel_spacing),
            )
            if value is None
        ]
        error = MissingGeometryError(
            f"series {series_name}: {len(missing)} of {len(frames)} images lack "
            f"{', '.join(tags)} (e.g. {example.path}); cannot place it in patient space"
        )
        stack = Stack(frames=frames, n_slices=len(frames), n_volumes=1, affine=None, label="",
                      problems=[str(error)], error=error)
        return [stack]
    for frame in frames:
        problem = geometry_problem(frame, limits)
        if problem is not None:
            invalid = InvalidGeometryError(f"series {series_name}: {problem} (e.g. {frame.path}); "
                                           "cannot place it in patient space")
            return [Stack(frames=frames, n_slices=len(frames), n_volumes=1, affine=None, label="",
                          problems=[str(invalid)], error=invalid)]

    buckets: dict[tuple[object, ...], list[Frame]] = defaultdict(list)
    for frame in frames:
        spacing = tuple(round(s, 4) for s in _placement(frame)[2])
        buckets[(frame.split_key, frame.rows, frame.cols, spacing)].append(frame)
    groups = [group for bucket in buckets.values() for group in _cluster_orientations(bucket)]

    stacks = [_build_stack(group, series_name) for group in groups]
    _label_stacks(stacks, groups)
    return stacks


def _label_stacks(stacks: list[Stack], groups: list[list[Frame]]) -> None:
    if len(stacks) == 1:
        return
    keys = [dict(g[0].split_key) for g in groups]
    parts: list[list[str]] = [[] for _ in stacks]
    planes = [plane_name(g[0].iop) for g in groups]
    if len(set(planes)) > 1:
        for p, plane in zip(parts, planes):
            p.append(plane)
    for name, prefix in (("echo", "e"), ("echo_time", "te"), ("stack", "stack"), ("phase_encoding", "pe_")):
        values = [k.get(name) for k in keys]
        if len(set(values)) > 1:
            for p, value in zip(parts, values):
                p.append(f"{prefix}{value}".replace(".", "p"))
    components = [k.get("component") for k in keys]
    if len(set(components)) > 1:
        for p, component in zip(parts, components):
            if component is not None and component != "magnitude":  # None: no component key (magnitude)
                p.append({"phase": "ph", "real": "real", "imaginary": "imag"}[component])
    sizes = [(g[0].rows, g[0].cols) for g in groups]
    if len(set(sizes)) > 1:
        for p, (rows, cols) in zip(parts, sizes):
            p.append(f"{cols}x{rows}")
    labels = ["_".join(p) for p in parts]
    for i, label in enumerate(labels):
        if labels.count(label) > 1 or not label:
            label = f"{label}_{i + 1}" if label else f"part{i + 1}"
        stacks[i].label = label


def _build_stack(frames: list[Frame], series_name: str) -> Stack:
    first = frames[0]
    _, first_iop, first_spacing = _placement(first)
    iop = np.asarray(first_iop)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    positions = np.array([np.dot(_placement(f)[0], normal) for f in frames])
    order = sorted(range(len(frames)), key=lambda i: (positions[i], frames[i].order_key))
    frames = [frames[i] for i in order]
    positions = positions[order]

    # Group equal positions (volumes of a 4D stack).
    slice_starts = [0] + [i for i in range(1, len(frames))
                          if positions[i] - positions[i - 1] > POSITION_TOLERANCE]
    counts = np.diff(slice_starts + [len(frames)])
    problems: list[str] = []
    error: Exception | None = None
    if len(set(counts.tolist())) > 1:
        error = InconsistentSeriesError(
            f"series {series_name}: slice positions hold differing numbers of images "
            f"({counts.min()}..{counts.max()}): images are missing or the series mixes acquisitions"
        )
    n_slices, n_volumes = len(slice_starts), int(counts[0])
    # Slice-major order -> within a position, volumes in acquisition order.
    slice_positions = positions[slice_starts]
    first_ipps = np.array([_placement(frames[s])[0] for s in slice_starts], dtype=np.float64)

    if n_slices > 1:
        steps = np.diff(slice_positions)
        median = float(np.median(steps))
        deviation = np.max(np.abs(steps - median))
        if error is None and deviation > max(SPACING_TOLERANCE * median, POSITION_TOLERANCE):
            error = InconsistentSeriesError(
                f"series {series_name}: uneven slice spacing (steps from {steps.min():.3f} to "
                f"{steps.max():.3f} mm, median {median:.3f} mm): slices are missing or the series "
                "mixes stacks"
            )
        slice_vector = (first_ipps[-1] - first_ipps[0]) / (n_slices - 1)
        tilt = np.degrees(np.arccos(np.clip(np.dot(slice_vector, normal)
                                            / np.linalg.norm(slice_vector), -1, 1)))
        if tilt > 0.5:
            problems.append(f"slices are sheared by {tilt:.1f} deg (gantry tilt); affine keeps it")
    else:
        thickness = first.spacing_between_slices or first.slice_thickness or 1.0
        slice_vector = normal * float(thickness)

    affine = np.eye(4)
    affine[:3, 0] = row_cos * first_spacing[1]
    affine[:3, 1] = col_cos * first_spacing[0]
    affine[:3, 2] = slice_vector
    affine[:3, 3] = first_ipps[0]
    if error is not None:
        problems.append(str(error))
    return Stack(frames=frames, n_slices=n_slices, n_volumes=n_volumes, affine=affine, label="",
                 problems=problems, error=error)


class _PixelCache:
    """Decoded pixel arrays by file, so a multi-frame or mosaic file is decoded once.

    Native (uncompressed) files are read straight from their pixel offset
    (:class:`medseg.io.dicom_headers.PixelLayout`); compressed ones go through pydicom and the
    pylibjpeg plugins.
    """

    def __init__(self) -> None:
        self._path: str | None = None
        self._array: np.ndarray | None = None

    def get(self, frame: Frame) -> np.ndarray:
        path = frame.path
        if path == self._path and self._array is not None:
            return self._array
        try:
            if frame.layout is not None:
                array = frame.layout.read(path)
            else:
                array = open_dataset(path, pixels=True).pixel_array
        except CorruptFileError:
            raise
        except Exception as exc:  # decoders raise many types; all mean "cannot decode"
            raise CorruptFileError(
                f"{path}: cannot decode pixel data ({type(exc).__name__}: {exc})"
            ) from exc
        self._path, self._array = path, array
        return array


def _frame_pixels(frame: Frame, cache: _PixelCache) -> np.ndarray:
    array = cache.get(frame)
    if frame.frame_index is not None:
        array = array[frame.frame_index] if array.ndim == 3 else array
    if frame.tile_index is not None:
        r, c = divmod(frame.tile_index, frame.mosaic_grid)
        array = array[r * frame.rows:(r + 1) * frame.rows, c * frame.cols:(c + 1) * frame.cols]
    if array.shape != (frame.rows, frame.cols):
        raise CorruptFileError(
            f"{frame.path}: decoded image is {array.shape}, header says {(frame.rows, frame.cols)}"
        )
    return array


def load_stack(stack: Stack, meta: VolumeMeta) -> Volume:
    """Decode a stack's pixels into a Volume (modality rescale applied), each file once, into
    one preallocated array.

    Integer data whose rescale is the identity keeps its dtype; otherwise values are float32.

    Raises:
        CorruptFileError: a file cannot be decoded, or the rescaled values are not finite (NaN or
            infinite pixels, or a RescaleSlope that overflows float32).
    """
    if stack.error is not None:
        raise stack.error
    identity = all(f.slope == 1.0 and f.intercept == 0.0 for f in stack.frames)
    cache = _PixelCache()
    first = stack.frames[0]
    data: np.ndarray | None = None
    for index, frame in enumerate(stack.frames):
        pixels = _frame_pixels(frame, cache)
        if data is None:
            dtype = pixels.dtype.newbyteorder("=") if identity else np.float32
            data = np.empty((len(stack.frames), first.rows, first.cols), dtype=dtype)
        if identity:
            data[index] = pixels
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                np.multiply(pixels, np.float32(frame.slope), out=data[index], casting="unsafe")
                data[index] += np.float32(frame.intercept)
    assert data is not None  # a stack has at least one frame
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        slopes = sorted({f.slope for f in stack.frames})
        raise CorruptFileError(
            f"series {meta.series_uid or meta.source}: {bad} voxel(s) are NaN or infinite after the "
            f"modality rescale (RescaleSlope {slopes[0]:g}..{slopes[-1]:g}); refusing to load")
    data = data.reshape(stack.n_slices, stack.n_volumes, first.rows, first.cols)
    data = np.transpose(data, (3, 2, 0, 1))  # -> (cols, rows, slices, volumes)
    if stack.n_volumes == 1:
        data = data[..., 0]
    assert stack.affine is not None  # only a stack with an error (raised above) has none
    return Volume(np.ascontiguousarray(data), stack.affine, meta)
