"""Whole-spine composing: stitch overlapping stations into one seamless image.

Pipeline: :func:`find_station_sets` -> :func:`compose` (output grid, registration refinement,
intensity matching, blending) -> :func:`extract_rotated_roi` for curved-spine viewing.
"""

from medseg.spine.compose import CompositeResult, StitchOptions, compose
from medseg.spine.roi import extract_rotated_roi
from medseg.spine.stations import find_station_sets, order_head_to_foot

__all__ = [
    "CompositeResult",
    "StitchOptions",
    "compose",
    "extract_rotated_roi",
    "find_station_sets",
    "order_head_to_foot",
]
