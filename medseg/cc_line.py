"""The lines of a CC mask on its mid-sagittal plane: box, subcallosal line, final.

The positioning stage reports them (:mod:`medseg.positioning.angles` names this module's API)
and the segmenter's canonical second pass turns its plane by the ``final`` line
(:mod:`medseg.segment.infer`); both stages sit above this module, so it lives here.

- ``box``: OpenCV ``minAreaRect`` of the CC, direction of its long side.
- ``line``: the subcallosal line, tangent to the inferior edge of the CC at the genu and the
  splenium. Found as the longest inferior-facing edge of the CC's convex hull (the bitangent
  spanning the CC's concave underside), then refined robustly: the inferior boundary points
  within ``band_mm`` of that tangent near each end are fitted with a Huber line (OpenCV fitLine),
  so a single noisy boundary pixel cannot tip it.
- ``final``: centre = mean of the two centres; angle = mean of the two angles (the established
  convention), flagged as inconsistent when box and line differ by more than a threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy import ndimage

from medseg.errors import NoCorpusCallosumError
from medseg.geometry import SUPERIOR, Plane, anterior_pointing, as_vec3, image_angle, physical_angle
from medseg.masks import largest_component


@dataclass(frozen=True)
class LineEstimate:
    """A centre and a direction, in image pixels and in patient space."""

    center_px: tuple[float, float]  # (x = column, y = row)
    direction_px: tuple[float, float]  # unit, pointing to the patient's anterior
    angle_image_deg: float  # on screen, counter-clockwise from +x
    center_mm: tuple[float, float, float]  # LPS
    direction_lps: tuple[float, float, float]  # unit, anterior-pointing
    angle_deg: float  # physical: from anterior, + when the anterior end is superior

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Localization:
    box: LineEstimate
    box_size_mm: tuple[float, float]  # (long side, short side)
    line: LineEstimate
    line_endpoints_px: tuple[tuple[float, float], tuple[float, float]]  # genu, splenium contacts
    final: LineEstimate
    box_line_difference_deg: float
    consistent: bool

    def as_dict(self) -> dict:
        return {
            "box": {**self.box.as_dict(), "size_mm": list(self.box_size_mm)},
            "line": {**self.line.as_dict(), "endpoints_px": [list(p) for p in self.line_endpoints_px]},
            "final": self.final.as_dict(),
            "box_line_difference_deg": self.box_line_difference_deg,
            "consistent": self.consistent,
        }


def clean_mask(mask: np.ndarray, min_pixels: int = 20) -> np.ndarray:
    """The largest connected component with holes filled.

    Raises:
        NoCorpusCallosumError: fewer than ``min_pixels`` CC pixels.
    """
    largest = largest_component(mask)
    if not largest.any():
        raise NoCorpusCallosumError("no corpus callosum found (empty mask)")
    if largest.sum() < min_pixels:
        raise NoCorpusCallosumError(f"corpus callosum too small ({int(largest.sum())} pixels)")
    return ndimage.binary_fill_holes(largest)


def _estimate(plane: Plane, center_xy: np.ndarray, dxy: np.ndarray) -> LineEstimate:
    dxy = anterior_pointing(plane, dxy / np.linalg.norm(dxy))
    direction = plane.direction_to_patient(dxy)
    return LineEstimate(
        center_px=(float(center_xy[0]), float(center_xy[1])),
        direction_px=(float(dxy[0]), float(dxy[1])),
        angle_image_deg=image_angle(dxy),
        center_mm=as_vec3(plane.to_patient(center_xy)[0]),
        direction_lps=as_vec3(direction),
        angle_deg=physical_angle(direction),
    )


def _contour(mask: np.ndarray, probability: np.ndarray | None = None, threshold: float = 0.5) -> np.ndarray:
    """Outline points (x, y) of the CC: the sub-pixel ``threshold`` iso-line of ``probability``
    around the mask when given (marching squares, scikit-image), else the pixel outline (OpenCV).

    Pixel outlines quantise angles: on a 70-pixel CC one row step is ~0.8 deg, and the box and
    line snap to the pixel grid for small tilts; the iso-line keeps the sub-pixel information.
    """
    if probability is not None:
        from skimage import measure

        region = ndimage.binary_dilation(mask, iterations=2)
        field = np.where(region, probability, 0.0)
        lines = measure.find_contours(np.pad(field, 1), threshold)
        if lines:
            line = max(lines, key=len)
            if len(line) >= 10:
                return line[:, ::-1] - 1.0  # (row, col) -> (x, y), undo the padding
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)


def box_estimate(mask: np.ndarray, plane: Plane, probability: np.ndarray | None = None, *,
                 threshold: float = 0.5) -> tuple[LineEstimate, tuple[float, float]]:
    """Minimum-area rectangle (in mm, so anisotropic pixels are handled): centre and long axis."""
    points = _contour(mask, probability, threshold)
    sx, sy = np.linalg.norm(plane.x_vec), np.linalg.norm(plane.y_vec)
    (cx, cy), (w, h), angle = cv2.minAreaRect((points * [sx, sy]).astype(np.float32))
    t = np.radians(angle)
    side_w = np.array([np.cos(t), np.sin(t)])  # OpenCV: angle is that of the 'width' side
    long_dir = side_w if w >= h else np.array([-side_w[1], side_w[0]])
    dxy = long_dir / [sx, sy]
    return _estimate(plane, np.array([cx / sx, cy / sy]), dxy), (float(max(w, h)), float(min(w, h)))


def subcallosal_line(mask: np.ndarray, plane: Plane, *, band_mm: float = 1.0,
                     probability: np.ndarray | None = None, threshold: float = 0.5
                     ) -> tuple[LineEstimate, tuple[tuple[float, float], tuple[float, float]]]:
    """The line along the inferior edge of the CC, touching genu and splenium."""
    points = _contour(mask, probability, threshold)
    sx, sy = np.linalg.norm(plane.x_vec), np.linalg.norm(plane.y_vec)
    mm = points * [sx, sy]  # isotropic working space
    hull = cv2.convexHull(mm.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    inferior = -plane.image_direction(SUPERIOR) * [sx, sy]
    inferior /= np.linalg.norm(inferior)
    centroid = mm.mean(axis=0)
    best, best_len = None, -1.0
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        edge = b - a
        length = float(np.linalg.norm(edge))
        if length == 0:
            continue
        normal = np.array([edge[1], -edge[0]]) / length
        if np.dot(normal, (a + b) / 2 - centroid) < 0:
            normal = -normal  # outward
        if np.dot(normal, inferior) > np.cos(np.radians(60)) and length > best_len:
            best, best_len = (a, b, normal), length
    if best is None:
        raise NoCorpusCallosumError("no inferior edge found on the corpus callosum outline")
    a, b, normal = best
    # Robust refinement: boundary points near the tangent, at each end (outer 35 % of its span).
    direction = (b - a) / np.linalg.norm(b - a)
    along = (mm - a) @ direction
    distance = (mm - a) @ normal  # <= 0 inside
    span = float(np.linalg.norm(b - a))
    near = distance > -band_mm
    ends = near & ((along < 0.35 * span) | (along > 0.65 * span))
    if ends.sum() >= 4 and (along[ends] < 0.35 * span).any() and (along[ends] > 0.65 * span).any():
        vx, vy, x0, y0 = cv2.fitLine(mm[ends].astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        fit_dir, fit_point = np.array([vx, vy]), np.array([x0, y0])
        if np.dot(fit_dir, direction) < 0:
            fit_dir = -fit_dir
        # Keep the fitted line tangent: shift it to the outermost selected point.
        fit_normal = np.array([fit_dir[1], -fit_dir[0]])
        if np.dot(fit_normal, normal) < 0:
            fit_normal = -fit_normal
        offset = np.max((mm[ends] - fit_point) @ fit_normal)
        fit_point = fit_point + offset * fit_normal
        a = fit_point + ((a - fit_point) @ fit_dir) * fit_dir
        b = fit_point + ((b - fit_point) @ fit_dir) * fit_dir
    ends_px = ((float(a[0] / sx), float(a[1] / sy)), (float(b[0] / sx), float(b[1] / sy)))
    centre_px = np.array([(a[0] + b[0]) / 2 / sx, (a[1] + b[1]) / 2 / sy])
    dxy = (b - a) / [sx, sy]
    estimate = _estimate(plane, centre_px, dxy)
    # order endpoints genu (anterior) first
    if np.dot(np.array(ends_px[1]) - np.array(ends_px[0]), estimate.direction_px) > 0:
        ends_px = (ends_px[1], ends_px[0])
    return estimate, ends_px


def _mean_direction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.dot(a, b) < 0:
        b = -b
    m = a + b
    return m / np.linalg.norm(m)


def smooth_outline(mask: np.ndarray, plane: Plane, probability: np.ndarray | None, smoothing_mm: float,
                   *, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray | None]:
    """(mask, probability) of the CC smoothed by a Gaussian of ``smoothing_mm``; the smoothed
    probability is the CC above ``threshold`` (a smoothed binary mask above 0.5).

    Box and line are tangents to the outline, and their contact at the genu jumps between the
    rostrum's thin tip and the genu's knee depending on how a segmentation draws the rostrum
    (image to image, model to reference). On the outline smoothed at ~3.5 mm the contacts stop
    jumping: on held-out heads, rotating the image by theta changed the final angle by theta
    within a mean 0.2-0.9 deg (unsmoothed: 2-3 deg), and model and reference labels agree within
    0.7 deg (unsmoothed: up to 7 deg). The smoothed line is a slightly different line: the
    tangent under the CC's bulk rather than under its thinnest tips.
    """
    pixel = float(min(np.linalg.norm(plane.x_vec), np.linalg.norm(plane.y_vec)))
    field = probability if probability is not None else mask.astype(np.float64)
    smoothed = ndimage.gaussian_filter(np.asarray(field, dtype=np.float64), smoothing_mm / pixel)
    smooth_mask = smoothed > (threshold if probability is not None else 0.5)
    # Too thin to smooth (a thin body dissolves and the CC falls apart into genu and splenium,
    # whose largest part would then be taken for the CC): the outline is kept as it is.
    if largest_component(smooth_mask & ndimage.binary_dilation(mask, iterations=2)).sum() < 0.5 * mask.sum():
        return mask, probability
    return smooth_mask, smoothed


def localize(mask: np.ndarray, plane: Plane, *, max_difference_deg: float = 10.0,
             probability: np.ndarray | None = None, smoothing_mm: float = 0.0,
             threshold: float = 0.5) -> Localization:
    """Box, subcallosal line and final plan from a CC mask (image rows = y, columns = x).

    ``probability`` (the network's CC probability on the same pixels) gives sub-pixel outlines,
    drawn where it crosses ``threshold`` (the model contract's ``output.threshold``);
    ``smoothing_mm`` > 0 fits box and line to the smoothed outline (:func:`smooth_outline`; the
    positioning pipeline uses 3.5 mm), 0 to the outline exactly as given.

    Raises:
        NoCorpusCallosumError: empty, tiny or edge-less masks.
    """
    cleaned = clean_mask(mask)
    if smoothing_mm > 0:
        smoothed, probability = smooth_outline(cleaned, plane, probability, smoothing_mm, threshold=threshold)
        cleaned = clean_mask(smoothed)
    if probability is not None:
        probability = np.where(ndimage.binary_dilation(cleaned, iterations=2), probability, 0.0)
    box, size = box_estimate(cleaned, plane, probability, threshold=threshold)
    line, ends = subcallosal_line(cleaned, plane, probability=probability, threshold=threshold)
    centre = (np.array(box.center_px) + np.array(line.center_px)) / 2
    # Mean angle: the bisector of the two directions in mm space (its physical angle is the
    # mean of the two physical angles when both lie in the sagittal plane).
    spacing = np.array([np.linalg.norm(plane.x_vec), np.linalg.norm(plane.y_vec)])
    unit = [np.array(e.direction_px) * spacing for e in (box, line)]
    dxy = _mean_direction(*(u / np.linalg.norm(u) for u in unit)) / spacing
    final = _estimate(plane, centre, dxy)
    difference = abs(box.angle_deg - line.angle_deg)
    return Localization(box, size, line, ends, final, difference, difference <= max_difference_deg)
