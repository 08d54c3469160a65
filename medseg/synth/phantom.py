"""A procedural T1-like head phantom with a corpus-callosum-like arch and a known head pitch.

Everything is defined in patient space (LPS mm) and sampled on any grid, so the same head can be
"scanned" in any orientation, slice thickness or position, with its truth known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.volume import Volume, VolumeMeta


@dataclass(frozen=True)
class HeadPhantom:
    """Head geometry. ``pitch_deg`` rotates the head about the L-R axis (nose up is positive).

    The CC arch lies in the mid-sagittal plane x = ``midline_x``; with zero pitch its subcallosal
    line (genu to splenium, inferior edge) runs along the anterior axis.
    """

    pitch_deg: float = 0.0
    midline_x: float = 0.0
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0

    def rotation(self) -> np.ndarray:
        """Head-to-patient rotation R (p = R h + centre): a pitch about the L-R axis that maps the
        head's anterior direction (0, -1, 0) to (0, -cos t, sin t), i.e. lifts it superior."""
        t = np.radians(self.pitch_deg)
        c, s = np.cos(t), np.sin(t)
        return np.array([[1, 0, 0], [0, c, s], [0, -s, c]], dtype=np.float64)

    def head_coordinates(self, points: np.ndarray) -> np.ndarray:
        """Patient LPS points -> head-fixed coordinates (x L, y P, z S, origin at the centre)."""
        return (points - np.asarray(self.center)) @ self.rotation()

    def labels(self, points: np.ndarray) -> np.ndarray:
        """Tissue label per point: 0 air, 1 scalp, 2 skull, 3 CSF, 4 grey matter, 5 white matter,
        6 ventricle, 7 corpus callosum."""
        x, y, z = self.head_coordinates(points).T
        x = x - self.midline_x

        def ellipsoid(rx, ry, rz, cy=0.0, cz=0.0):
            return (x / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2

        label = np.zeros(len(points), dtype=np.uint8)
        label[ellipsoid(76, 96, 86) <= 1] = 1
        label[ellipsoid(70, 90, 80) <= 1] = 2
        label[ellipsoid(65, 85, 75) <= 1] = 3
        label[ellipsoid(62, 82, 72) <= 1] = 4
        label[ellipsoid(52, 72, 60, cz=5) <= 1] = 5
        # Lateral ventricles: below the CC arch, either side of the midline.
        ventricle = ((np.abs(x) - 9) / 7) ** 2 + ((y + 2) / 30) ** 2 + ((z - 12) / 9) ** 2 <= 1
        label[ventricle] = 6
        # Corpus callosum: an arch between two half-ellipses in the sagittal plane, |x| < 7 mm.
        outer = (y / 40) ** 2 + ((z - 8) / 22) ** 2 <= 1
        inner = (y / 33) ** 2 + ((z - 8) / 15) ** 2 <= 1
        arch = outer & ~inner & (z >= 8 - 3 * np.cos(np.clip(y / 40, -1, 1) * np.pi / 2))
        label[arch & (np.abs(x) < 7)] = 7
        return label

    def sample(self, shape: tuple[int, int, int], affine: np.ndarray, *, noise: float = 0.02,
               bias: float = 0.2, slab_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """T1-like intensities and labels on a grid (``slab_mm`` > 0 averages a thick slab across
        the third axis, as a thick localizer slice does)."""
        offsets = [0.0]
        if slab_mm > 0:
            step = np.linalg.norm(affine[:3, 2])
            n = max(1, int(round(slab_mm / 1.0)))
            offsets = list(np.linspace(-0.5, 0.5, n) * (slab_mm / step)) if n > 1 else [0.0]
        grid = np.indices(shape).reshape(3, -1).T.astype(np.float64)
        contrast = np.array([0.0, 0.55, 0.08, 0.15, 0.55, 0.85, 0.15, 0.95], dtype=np.float32)
        image = np.zeros(len(grid), dtype=np.float32)
        for offset in offsets:
            points = (grid + [0, 0, offset]) @ affine[:3, :3].T + affine[:3, 3]
            image += contrast[self.labels(points)]
        image /= len(offsets)
        points = grid @ affine[:3, :3].T + affine[:3, 3]
        label = self.labels(points)
        rng = np.random.default_rng(self.seed)
        if bias:
            head = self.head_coordinates(points)
            field = np.exp(bias * (head[:, 0] / 90 + 0.5 * head[:, 2] / 90 - 0.3 * head[:, 1] / 90))
            image *= field.astype(np.float32)
        if noise:
            image = np.abs(image + rng.normal(0, noise, image.shape).astype(np.float32)
                           + 1j * rng.normal(0, noise, image.shape).astype(np.float32))
        return image.reshape(shape).astype(np.float32), label.reshape(shape)


def sagittal_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                    center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A sagittal grid as scanners store it: i runs anterior->posterior (+P), j superior->inferior
    (-S), k right->left (+L); centred on ``center`` (LPS mm)."""
    direction = np.column_stack([[0, 1, 0], [0, 0, -1], [1, 0, 0]]).astype(np.float64)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing, dtype=np.float64)
    half = (np.asarray(shape) - 1) / 2.0
    affine[:3, 3] = np.asarray(center) - affine[:3, :3] @ half
    return affine


def phantom_volume(phantom: HeadPhantom, shape: tuple[int, int, int], affine: np.ndarray, *,
                   description: str = "phantom", slab_mm: float = 0.0, scale: float = 1000.0,
                   noise: float = 0.02) -> tuple[Volume, Volume]:
    """(image, CC/tissue label) Volumes of ``phantom`` on a grid; the image is scaled to
    scanner-like integers."""
    image, label = phantom.sample(shape, affine, slab_mm=slab_mm, noise=noise)
    meta = VolumeMeta(modality="MR", description=description)
    image_volume = Volume(np.rint(image * scale).astype(np.int16), affine, meta)
    label_volume = Volume(label, affine, meta.replace(description=f"{description} labels",
                                                      is_label=True))
    return image_volume, label_volume
