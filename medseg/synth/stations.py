"""Cutting a long spine image into overlapping stations with known truth.

Each station is a sagittal acquisition with its own matrix and spacing, intensity gain, a smooth
coil-like bias along head-foot, noise, and a table-position error: the anatomy it shows sits
``table_error_mm`` away from where its DICOM geometry says (as when the table stops a few mm off).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medseg.resample import resample_to_grid
from medseg.volume import Volume, corner_indices


@dataclass(frozen=True)
class StationSpec:
    superior_mm: float  # LPS z of the station's top edge
    inferior_mm: float  # LPS z of its bottom edge
    in_plane_mm: float = 1.0
    slice_mm: float = 2.0
    gain: float = 1.0
    bias: float = 0.0  # relative intensity drop at the station's head-foot edges
    table_error_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise: float = 0.0  # relative to the source's 99th percentile


@dataclass
class StationTruth:
    stations: list[Volume]
    specs: list[StationSpec]
    expected_correction_mm: list[np.ndarray] = field(default_factory=list)


def sagittal_station_grid(source: Volume, spec: StationSpec) -> tuple[tuple[int, int, int], np.ndarray]:
    """A sagittal grid (i: anterior->posterior, j: superior->inferior, k: right->left) covering
    the source's L-R and A-P extent between the spec's head-foot limits."""
    world = source.world_coordinates(corner_indices(source.spatial_shape))
    lo, hi = world.min(axis=0), world.max(axis=0)
    direction = np.column_stack([[0, 1, 0], [0, 0, -1], [-1, 0, 0]]).astype(np.float64)
    spacing = np.array([spec.in_plane_mm, spec.in_plane_mm, spec.slice_mm])
    n_ap = int((hi[1] - lo[1]) / spec.in_plane_mm) + 1
    n_si = int((spec.superior_mm - spec.inferior_mm) / spec.in_plane_mm) + 1
    n_lr = int((hi[0] - lo[0]) / spec.slice_mm) + 1
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = [hi[0], lo[1], spec.superior_mm]  # right-most slice, anterior, top
    return (n_ap, n_si, n_lr), affine


def make_stations(source: Volume, specs: list[StationSpec], *, reference: int = 0, seed: int = 0
                  ) -> StationTruth:
    """Stations of ``source`` per ``specs``; ``expected_correction_mm[i]`` is the correction a
    perfect registration reports for station i (its table error relative to the reference)."""
    rng = np.random.default_rng(seed)
    scale = float(np.percentile(np.asarray(source.array, dtype=np.float64), 99))
    stations = []
    for number, spec in enumerate(specs):
        shape, affine = sagittal_station_grid(source, spec)
        shifted = affine.copy()
        shifted[:3, 3] += np.asarray(spec.table_error_mm)  # content comes from x + error
        image = np.array(resample_to_grid(source, shape, shifted, interpolation="linear").array,
                         dtype=np.float32)
        rows = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :, None]
        image *= spec.gain * (1.0 - spec.bias * rows ** 2)
        if spec.noise:
            image += rng.normal(0, spec.noise * scale * spec.gain, image.shape).astype(np.float32)
        image = np.clip(image, 0, None)
        meta = source.meta.replace(description=f"T2 SAG station {number + 1}",
                                   series_uid=f"station-{number + 1}", series_number=number + 1,
                                   modality="MR", is_label=False)
        stations.append(Volume(image, affine, meta))
    ref_error = np.asarray(specs[reference].table_error_mm, dtype=np.float64)
    expected = [np.asarray(s.table_error_mm, dtype=np.float64) - ref_error for s in specs]
    return StationTruth(stations, specs, expected)
