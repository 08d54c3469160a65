"""Which stage handles which series of a study.

- spine stations: the composing sets found by :func:`medseg.spine.find_station_sets` -> stitch;
- brain: sagittal stacks (localizers) and 3D volumes (>= 40 slices) of MR, not spine -> position;
- anything else is skipped, with the reason recorded.

A series is taken for spine when BodyPartExamined or its description says spine; for brain when
they say head/brain or say nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medseg.io.scan import SeriesRef, Study
from medseg.planes import plane_name
from medseg.spine.stations import find_station_sets

_SPINE_WORDS = re.compile(r"(spine|spinal|cervical|thoracic|lumbar|sacr|\b[chlbt]?ws\b|\b[ctl]s\b|wirbel|myelon|cord)",
                          re.I)
_SPINE_PARTS = {"SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "WHOLESPINE", "NECK", "BACK"}


def is_spine(ref: SeriesRef) -> bool:
    return ref.body_part in _SPINE_PARTS or bool(_SPINE_WORDS.search(ref.stored_description or ref.description))


def is_brain_image(affine, shape) -> bool:
    """A sagittal stack (slices across any array axis, :mod:`medseg.planes`) or a 3D volume
    (at least 40 voxels along every axis)."""
    return plane_name(affine, shape) == "sag" or min(shape[:3]) >= 40


@dataclass
class Route:
    brain: list[SeriesRef] = field(default_factory=list)
    spine_sets: list[list[SeriesRef]] = field(default_factory=list)
    skipped: list[tuple[SeriesRef, str]] = field(default_factory=list)


def route_study(study: Study) -> Route:
    route = Route()
    usable = []
    for ref in study.series:
        if ref.modality and ref.modality.upper() != "MR":
            route.skipped.append((ref, f"modality {ref.modality} (medseg handles MR)"))
        elif not ref.ok or (ref.affine is None and ref.problems):
            usable.append(ref)  # broken (damaged file, unreadable header): fails at load, recorded
        elif ref.affine is None or len(ref.shape) != 3:
            route.skipped.append((ref, "not a single 3D image (4D or no geometry)"))
        else:
            usable.append(ref)
    spine_candidates = [r for r in usable if r.ok and is_spine(r)]
    route.spine_sets = find_station_sets(spine_candidates)
    in_sets = {id(r) for members in route.spine_sets for r in members}
    for ref in usable:
        if id(ref) in in_sets:
            continue
        if not ref.ok or ref.affine is None:
            route.brain.append(ref)  # broken, never "skipped": its load error is recorded as a failure
        elif is_spine(ref):
            route.skipped.append((ref, "spine series without overlapping partner stations"))
        elif is_brain_image(ref.affine, ref.shape):
            route.brain.append(ref)
        else:
            route.skipped.append((ref, f"{plane_name(ref.affine, ref.shape)} stack of {min(ref.shape)} "
                                       "slices: neither a sagittal localizer nor a 3D volume"))
    return route
