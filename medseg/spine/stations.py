"""Finding the series of a study that form one composing set, and ordering them head to foot."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

import numpy as np

from medseg.errors import InputError
from medseg.io.scan import SeriesRef
from medseg.planes import plane_name
from medseg.volume import Volume, corner_indices

# Words and numbers that tell stations apart in series descriptions ("T2 SAG C", "t2_sag_2/3").
_STATION_TOKENS = re.compile(
    r"(\b(station|stn|st|part|cervical|thoracic|lumbar|sacral|c|t|l|cs|ts|ls|hws|bws|lws|upper|"
    r"middle|lower|up|mid|low)\b|\d+\s*/\s*\d+|\d+)",
    flags=re.I,
)


def plane_of(affine: np.ndarray, shape: Sequence[int]) -> str:
    """'sag', 'cor' or 'ax': the plane of the image's slices, in any array axis order
    (:func:`medseg.planes.plane_name`)."""
    return plane_name(affine, shape)


def contrast_key(description: str) -> str:
    """The description with station words and numbers removed: same key = same sequence."""
    text = _STATION_TOKENS.sub(" ", description.lower().replace("_", " ").replace("-", " "))
    return " ".join(text.split())


def head_foot_extent(shape: Sequence[int], affine: np.ndarray) -> tuple[float, float]:
    """(inferior, superior) LPS z range covered by a grid's voxel centres."""
    corners = corner_indices(shape)
    z = (corners @ affine[:3, :3].T + affine[:3, 3])[:, 2]
    return float(z.min()), float(z.max())


def order_head_to_foot(volumes: Sequence[Volume]) -> list[Volume]:
    """Stations sorted by the centre of their head-foot extent, superior first."""
    return sorted(volumes, key=lambda v: -float(np.mean(head_foot_extent(v.spatial_shape, v.affine))))


def find_station_sets(series: Sequence[SeriesRef], *, min_overlap_mm: float = 0.0,
                      max_gap_mm: float = 20.0) -> list[list[SeriesRef]]:
    """Group a study's series into composing sets, each ordered head to foot.

    Members of a set share the study, plane (sagittal or coronal), modality and sequence
    (description without station words); consecutive members overlap along the head-foot axis
    (or leave a gap no larger than ``max_gap_mm``, flagged later by :func:`compose`). Only sets
    of two or more stations are returned.
    """
    groups: dict[tuple, list[SeriesRef]] = defaultdict(list)
    extents: dict[int, tuple[float, float]] = {}
    for ref in series:
        if ref.affine is None or not ref.ok or len(ref.shape) != 3:
            continue
        plane = plane_of(ref.affine, ref.shape)
        if plane == "ax":
            continue
        extents[id(ref)] = head_foot_extent(ref.shape, ref.affine)
        # Not keyed by FrameOfReferenceUID: some scanners issue a new one after each table move.
        contrast = contrast_key(ref.stored_description or ref.description)
        groups[(ref.study_uid, plane, ref.modality, contrast)].append(ref)
    sets = []
    for members in groups.values():
        members = sorted(members, key=lambda m: -np.mean(extents[id(m)]))
        current = [members[0]]
        for previous, member in zip(members, members[1:]):
            gap = extents[id(member)][1] - extents[id(previous)][0]  # >0: they overlap
            # a station reaches further down than the one above it; a series covering the same
            # range (a repeat of one acquisition) is no further station
            extends = extents[id(member)][0] < extents[id(previous)][0] - 1.0
            if gap >= min_overlap_mm - max_gap_mm and gap > -max_gap_mm and extends:
                current.append(member)
            else:
                if len(current) > 1:
                    sets.append(current)
                current = [member]
        if len(current) > 1:
            sets.append(current)
    return sets


def check_compatible(volumes: Sequence[Volume]) -> str:
    """The shared plane of the stations; a clear error if they mix orientations."""
    planes = {plane_of(v.affine, v.spatial_shape) for v in volumes}
    if len(planes) != 1:
        raise InputError(f"stations mix orientations ({', '.join(sorted(planes))}); "
                         "a composing set must be all sagittal or all coronal")
    for v in volumes:
        if v.array.ndim != 3:
            raise InputError(f"station {v.meta.description!r} is 4D {v.shape}; pass one volume")
    return planes.pop()
