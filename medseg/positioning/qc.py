"""QC picture of a positioning result: the mid-sagittal slice with the CC outline, the minimum-area
box, the subcallosal line, the final line and the planned axial slab, angles printed.

Drawn in display orientation (superior up, anterior left) whatever the storage orientation.
"""

from __future__ import annotations

import cv2
import numpy as np

from medseg.geometry import ANTERIOR, SUPERIOR, Plane
from medseg.positioning.angles import Localization

COLOURS = {"cc": (80, 220, 80), "box": (0, 215, 255), "line": (60, 60, 255), "final": (255, 220, 0),
           "slab": (255, 160, 60)}


def _display_transform(plane: Plane, shape: tuple[int, int], scale: float) -> np.ndarray:
    """2x3 affine from image pixels (x, y) to display pixels: anterior left, superior up."""
    ax = plane.image_direction(ANTERIOR)  # image direction of anterior
    sup = plane.image_direction(SUPERIOR)
    # display x grows towards posterior (-anterior), display y towards inferior (-superior)
    sx, sy = np.linalg.norm(plane.x_vec), np.linalg.norm(plane.y_vec)
    to_mm = np.diag([sx, sy])
    m = np.vstack([-ax @ to_mm, -sup @ to_mm]) * scale / min(sx, sy)
    h, w = shape
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    mapped = corners @ m.T
    offset = -mapped.min(axis=0)
    return np.hstack([m, offset[:, None]])


def render_qc(image: np.ndarray, mask: np.ndarray, plane: Plane, result: Localization, *,
              slab_half_mm: float = 60.0, title: str = "") -> np.ndarray:
    """BGR uint8 picture (``image`` and ``mask`` indexed [y, x])."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [1, 99.5])
    gray = np.clip((image - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    scale = max(1.0, 512.0 / max(image.shape) * min(np.linalg.norm(plane.x_vec), np.linalg.norm(plane.y_vec)))
    transform = _display_transform(plane, image.shape, scale)
    size = np.ceil(np.abs(transform[:, :2]) @ np.array(image.shape[::-1])).astype(int) + 1

    def warp(a, interpolation):
        return cv2.warpAffine(a, transform, (int(size[0]), int(size[1])), flags=interpolation)

    canvas = cv2.cvtColor(warp(gray, cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)

    def pt(xy):
        p = transform[:, :2] @ np.asarray(xy, dtype=np.float64) + transform[:, 2]
        return int(round(p[0])), int(round(p[1]))

    def line_through(centre, direction, half_length_px, colour, thickness=2):
        c, d = np.asarray(centre), np.asarray(direction)
        cv2.line(canvas, pt(c - d * half_length_px), pt(c + d * half_length_px), colour, thickness,
                 cv2.LINE_AA)

    # planned slab: band parallel to the final line
    final_c = np.array(result.final.center_px)
    final_d = np.array(result.final.direction_px)
    sup = plane.image_direction(SUPERIOR)
    normal = np.array([-final_d[1], final_d[0]])
    if np.dot(normal, sup) < 0:
        normal = -normal
    pixel_mm = float(np.linalg.norm(plane.x_vec))
    half = slab_half_mm / pixel_mm
    span = 2 * max(image.shape)
    overlay = canvas.copy()
    quad = [pt(final_c + normal * half - final_d * span), pt(final_c + normal * half + final_d * span),
            pt(final_c - normal * half + final_d * span), pt(final_c - normal * half - final_d * span)]
    cv2.fillPoly(overlay, [np.array(quad, np.int32)], COLOURS["slab"])
    canvas = cv2.addWeighted(overlay, 0.18, canvas, 0.82, 0)

    contours, _ = cv2.findContours(warp(mask.astype(np.uint8) * 255, cv2.INTER_NEAREST),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, COLOURS["cc"], 1, cv2.LINE_AA)
    # box: rebuild its corners from centre, direction and size
    box_c, box_d = np.array(result.box.center_px), np.array(result.box.direction_px)
    long_mm, short_mm = result.box_size_mm
    perp = np.array([-box_d[1], box_d[0]])
    corners = [box_c + (sa * long_mm / 2 * box_d + sb * short_mm / 2 * perp) / pixel_mm
               for sa, sb in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
    cv2.polylines(canvas, [np.array([pt(c) for c in corners], np.int32)], True, COLOURS["box"], 1, cv2.LINE_AA)
    genu, splenium = (np.array(p) for p in result.line_endpoints_px)
    line_d = np.array(result.line.direction_px)
    cv2.line(canvas, pt(genu + line_d * 15), pt(splenium - line_d * 15), COLOURS["line"], 2, cv2.LINE_AA)
    line_through(final_c, final_d, 0.6 * max(image.shape), COLOURS["final"], 1)

    status = "consistent" if result.consistent else "CHECK: box and line disagree"
    texts = [title,
             f"box   {result.box.angle_deg:+6.1f} deg",
             f"line  {result.line.angle_deg:+6.1f} deg",
             f"final {result.final.angle_deg:+6.1f} deg ({status})"]
    colours = [(255, 255, 255), COLOURS["box"], COLOURS["line"], COLOURS["final"]]
    for row, (text, colour) in enumerate((t, c) for t, c in zip(texts, colours) if t):
        cv2.putText(canvas, text, (8, 20 + 20 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return canvas


