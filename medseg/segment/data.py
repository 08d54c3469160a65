"""Training and evaluation samples for the corpus callosum model, cut from 3D labelled heads.

FreeSurfer's CC label (aseg 251..255) is a ~5 mm slab around FreeSurfer's own mid-sagittal plane,
often tilted from the voxel grid. Each subject is therefore realigned to the plane of its label
slab (PCA of the label voxels: the normal is the direction of least spread), and every sample is a
plane cut through the 3D image with a known pose relative to that plane: in-plane rotation (head
tilt), out-of-plane tilt, offset from the midline and slab thickness (thick localizer slices are
the average of several planes). The target is the CC label on the mid-sagittal plane in the same
image coordinates (each pixel projected onto that plane along its normal, so a plane turned out
of the midline keeps the whole CC: see :meth:`Subject.cc_target`); planes far off the midline are
negatives with an empty target.

FreeSurfer's CC label is not the CC alone: on many subjects it takes in the fornix hanging under
the body, the septum and CSF of the ventricles under the body, and a rim of partial-volume
voxels. The training target is therefore cleaned to the CC alone (:func:`corpus_callosum_alone`,
hand-written: no library separates the CC from the fornix): voxels darker than the midpoint of
white matter and CSF go, thin attachments (the fornix columns) are opened away, and where the
fornix runs under the body and splenium separated from it by a gap, only the uppermost run of
each column is kept; what hangs below the smooth lower edge of the body, or lies more than
8 mm below the body's upper surface (a fornix fused under it), goes too. On the FreeSurfer
subjects this takes the mid-sagittal label areas from 730-1,180 to 570-860 mm2. The cleaning is
done once per subject on its mid-sagittal plane and carried back to the 3D label slab (a voxel
stays when its projection onto the plane is CC alone).

The same sampler trains the skull-stripping network (``target="brain"``): planes anywhere across
the head, the target being ``brainmask.mgz`` on the sampled plane itself, and the crop taken from
the mid-sagittal plane for every offset (inference crops all planes of a volume alike).

The 2D image convention (shared with inference): rows run superior->inferior, columns
anterior->posterior, square pixels of ``spacing_mm``; the crop is centred on the head (see
:func:`medseg.infer.grid.crop_centre_from_sampler`), identically at training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.geometry import Plane
from medseg.infer.grid import crop_centre_from_sampler
from medseg.io import read_nifti
from medseg.segment.cc_alone import CC_INTENSITY_FRACTION, corpus_callosum_alone
from medseg.segment.synthseg import (
    GROUP_INDEX,
    SynthParams,
    group_map,
    outside_distance,
    reference_params,
    synthesise,
    texture_field,
)
from medseg.volume import Volume

CC_LABELS = (251, 252, 253, 254, 255)
# Tissue classes for contrast augmentation, from FreeSurfer aseg labels.
TISSUE_CLASSES = {"outside_brain": 0, "white_matter": 1, "grey_matter": 2, "csf": 3, "other": 4}
_WM = (2, 41, 7, 46, 16, 28, 60, 77, 85, 251, 252, 253, 254, 255)
_GM = (3, 42, 8, 47, 10, 11, 12, 13, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58)
_CSF = (4, 5, 14, 15, 24, 31, 43, 44, 63, 72)


def tissue_classes(aseg: np.ndarray) -> np.ndarray:
    """uint8 class map (TISSUE_CLASSES) from an aseg label map."""
    classes = np.full(aseg.shape, TISSUE_CLASSES["other"], np.uint8)
    classes[aseg == 0] = TISSUE_CLASSES["outside_brain"]
    classes[np.isin(aseg, _WM)] = TISSUE_CLASSES["white_matter"]
    classes[np.isin(aseg, _GM)] = TISSUE_CLASSES["grey_matter"]
    classes[np.isin(aseg, _CSF)] = TISSUE_CLASSES["csf"]
    return classes


PLANE_MM = 200  # extent of the 1 mm plane on which a subject's label is cleaned
CROP_TOP_TO_CENTRE_MM = 105.0  # crop centre lies this far below the top of the head


@dataclass(frozen=True)
class PlanePose:
    """Pose of a sampled plane relative to a subject's mid-sagittal (CC) plane."""

    rotation_deg: float = 0.0  # in-plane head tilt (positive: anterior end up)
    tilt_lr_deg: float = 0.0  # out-of-plane rotation about the anterior-posterior axis (roll)
    tilt_si_deg: float = 0.0  # out-of-plane rotation about the superior-inferior axis (yaw)
    offset_mm: float = 0.0  # distance of the plane from the midline (along its normal)
    slab_mm: float = 1.0  # slab thickness averaged into the image
    shift_mm: tuple[float, float] = (0.0, 0.0)  # jitter of the crop centre (row, col)
    scale: float = 1.0  # anatomical scale (zoom)


@dataclass
class Subject:
    """A labelled head in LPS with its mid-sagittal frame (centre, normal, anterior, superior)."""

    name: str
    image: np.ndarray
    cc: np.ndarray  # uint8 CC mask
    inverse_affine: np.ndarray
    centre: np.ndarray
    normal: np.ndarray
    posterior: np.ndarray
    inferior: np.ndarray
    head: np.ndarray | None = field(repr=False, default=None)  # uint8 head mask (from_volumes sets it)
    white_level: float = 1.0  # 99.5th percentile of the image (intensity scale)
    tissue: np.ndarray | None = field(repr=False, default=None)  # uint8 tissue class (see TISSUE_CLASSES)
    brain: np.ndarray | None = field(repr=False, default=None)  # uint8 brain mask (skull stripping)
    cc_plane: np.ndarray | None = field(repr=False, default=None)  # CC alone on the 1 mm mid-sagittal plane
    # SynthSeg-style synthesis (medseg.segment.synthseg): label group per voxel and distance (mm)
    # outside the brain's envelope; set with ``synthesis=True`` and for label-only subjects.
    groups: np.ndarray | None = field(repr=False, default=None)
    outside: np.ndarray | None = field(repr=False, default=None)
    label_only: bool = False  # no scan: every training image is synthesised from the labels

    @classmethod
    def load(cls, folder: Path, *, synthesis: bool = False) -> "Subject":
        """A FreeSurfer subject folder: T1.mgz + aseg.mgz (+ brainmask.mgz), or aseg.mgz alone
        (a label-only subject, see :meth:`from_labels`)."""
        aseg = read_nifti(folder / "aseg.mgz")
        if not (folder / "T1.mgz").exists():
            return cls.from_labels(folder.name, aseg)
        subject = cls.from_volumes(folder.name, read_nifti(folder / "T1.mgz"), aseg, synthesis=synthesis)
        if (folder / "brainmask.mgz").exists():
            subject.brain = (np.asarray(read_nifti(folder / "brainmask.mgz").array) > 0).astype(np.uint8)
        return subject

    @classmethod
    def from_labels(cls, name: str, aseg: Volume) -> "Subject":
        """A subject from an aseg alone. Its stored image (used to clean the CC label and for
        evaluation) is synthesised once with mid-range T1 contrast and a head of mid-range
        thicknesses; training draws a new synthesis per sample. Its head mask is the brain's
        envelope grown by 17 mm (the scanned subjects' head masks reach 16.5-17.5 mm beyond the
        envelope at the vertex), and it has no brain mask (the modelled head is too crude to
        teach skull stripping).

        On a flat synthetic image the CC cleaning's intensity rule removes nothing (no dark
        septum, no partial-volume rim): built from the scanned subjects' asegs, this target is
        2-6% larger on the plane than theirs (Dice 0.96-0.985 between the two); blurring the
        stored image by a 0.5-1 mm point spread first changes that by under 3% and lowers the Dice."""
        labels = np.asarray(aseg.array)
        spacing = float(np.mean(aseg.spacing))
        groups, outside = group_map(labels), outside_distance(labels, spacing)
        image = synthesise(groups, outside, reference_params(), np.zeros(labels.shape, np.float32)) * 110.0
        t1 = Volume(image.astype(np.float32), aseg.affine, aseg.meta)
        subject = cls.from_volumes(name, t1, aseg, synthesis=False)
        subject.groups, subject.outside, subject.label_only = groups, outside, True
        subject.head = (outside <= 17).astype(np.uint8)
        return subject

    @classmethod
    def from_volumes(cls, name: str, t1: Volume, aseg: Volume, *, synthesis: bool = False) -> "Subject":
        labels = np.asarray(aseg.array)
        cc = np.isin(labels, CC_LABELS)
        if cc.sum() < 50:
            raise ValueError(f"{name}: no corpus callosum label")
        points = t1.world_coordinates(np.argwhere(cc))
        centre = points.mean(axis=0)
        _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
        normal = vt[2] * np.sign(vt[2][0] or 1.0)  # towards patient left
        posterior = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
        posterior /= np.linalg.norm(posterior)
        inferior = np.cross(posterior, normal)  # LPS: L x P = +S, so P x L = inferior
        image = np.asarray(t1.array, dtype=np.float32)
        level = float(np.percentile(image, 99.5)) or 1.0
        head = ndimage.binary_fill_holes(ndimage.binary_opening(image > 0.1 * level, iterations=2))
        subject = cls(name, image, cc.astype(np.uint8), np.linalg.inv(t1.affine), centre, normal,
                      posterior, inferior, head.astype(np.uint8), level, tissue_classes(labels))
        subject.cc, wm = subject._cc_alone(points, np.argwhere(cc))
        if synthesis:
            groups = group_map(labels)
            # CC-labelled voxels that the scan shows dark (septum, CSF under the body: the label
            # cleaning dropped them) are synthesised as ventricle CSF, not as white matter; the
            # bright ones it dropped (fornix) stay white matter, a negative as they are in scans.
            # Dark by the same level the cleaning used (the raw label's white matter).
            dark = cc & (subject.cc == 0) & (image <= CC_INTENSITY_FRACTION * wm)
            groups[dark] = GROUP_INDEX["ventricle_csf"]
            subject.groups = groups
            subject.outside = outside_distance(labels, float(np.mean(aseg.spacing)))
        return subject

    def _cc_alone(self, points: np.ndarray, voxels: np.ndarray) -> tuple[np.ndarray, float]:
        """The 3D label slab reduced to the CC alone (see corpus_callosum_alone), and the
        white-matter level its intensity rule measured against (the raw label's 75th percentile)."""
        steps = np.arange(PLANE_MM, dtype=np.float64) - (PLANE_MM - 1) / 2
        grid = (self.centre + steps[:, None, None] * self.inferior + steps[None, :, None] * self.posterior)
        label = self._lookup(self.cc, grid, order=0) > 0
        clean = corpus_callosum_alone(label, self._lookup(self.image, grid))
        self.cc_plane = clean.astype(np.uint8)
        rows, cols, inside = self._plane_pixels(points)
        keep = np.zeros(len(points), bool)
        keep[inside] = clean[rows[inside], cols[inside]]
        # the 3D slab also keeps only voxels bright enough to be CC (the plane saw one cut of it)
        wm = float(np.percentile(self.image[self.cc > 0], 75))
        values = self.image[tuple(voxels.T)]
        keep &= values > CC_INTENSITY_FRACTION * wm
        out = np.zeros_like(self.cc)
        out[tuple(voxels[keep].T)] = 1
        return out, wm

    def cc_target(self, points: np.ndarray) -> np.ndarray:
        """The CC-alone target at ``points`` (..., 3) in LPS: the mid-sagittal label projected
        along the midline's normal. A plane turned out of the midline (roll, yaw) thus keeps the
        whole CC: looking its points up in FreeSurfer's ~5 mm label slab instead cuts the genu and
        splenium off once they lie more than ~2.5 mm lateral (a 6 deg yaw halves the area), and a
        network trained on that learns to shorten the CC on oblique slabs, which turns the plan.

        A plane beside the midline gets the midline's CC too (up to 8 mm, as the target always
        had): the CC is there in the image 5 mm lateral, and a localizer slice may miss the
        midline by half its gap. Keeping FreeSurfer's slab edge instead (the label gone 3 mm
        lateral, a labelling convention the image does not show) made the starting network's
        validation Dice drop from 0.92 to 0.78. The network's area thus does not mark the
        midline; the localizer search chooses by confidence (medseg.segment.infer)."""
        if self.cc_plane is None:  # a Subject built without the cleaned plane: the 3D label as it is
            return self._lookup(self.cc, points, order=0) > 0
        rows, cols, inside = self._plane_pixels(points)
        out = np.zeros(points.shape[:-1], bool)
        out[inside] = self.cc_plane[rows[inside], cols[inside]] > 0
        return out

    def _plane_pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, inside) of ``points`` (..., 3) projected onto the 1 mm mid-sagittal plane
        of PLANE_MM pixels on which the label is cleaned."""
        rel = points - self.centre
        half = (PLANE_MM - 1) / 2
        rows = np.rint(rel @ self.inferior + half).astype(int)
        cols = np.rint(rel @ self.posterior + half).astype(int)
        return rows, cols, (rows >= 0) & (rows < PLANE_MM) & (cols >= 0) & (cols < PLANE_MM)

    def _frame(self, pose: PlanePose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row_dir, col_dir, normal) of the posed plane in LPS."""
        def rot(axis, deg):
            t = np.radians(deg)
            axis = axis / np.linalg.norm(axis)
            k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k

        r = rot(self.posterior, pose.tilt_lr_deg) @ rot(self.inferior, pose.tilt_si_deg)
        normal = r @ self.normal
        # Image content rotated by +theta = head pitched anterior-up by theta.
        r_in = rot(normal, -pose.rotation_deg)
        return r_in @ r @ self.inferior, r_in @ r @ self.posterior, normal

    def plane(self, pose: PlanePose, size: int, spacing: float, *, crop_from_midline: bool = False):
        """The posed sampling plane as a positioning ``Plane`` (x = column, y = row). The crop is
        centred on the head as seen in this plane, or with ``crop_from_midline`` as seen in the
        mid-sagittal plane and moved along the normal (how skull stripping crops every plane)."""
        head = self.head
        if head is None:
            raise ValueError(f"{self.name}: no head mask")
        row_dir, col_dir, normal = self._frame(pose)
        centre = self.centre + normal * pose.offset_mm
        crop = crop_centre_from_sampler(
            lambda pts: self._lookup(head, pts, order=0) > 0,
            self.centre if crop_from_midline else centre, row_dir, col_dir, spacing=2.5,
            top_to_centre_mm=CROP_TOP_TO_CENTRE_MM)
        if crop_from_midline:
            crop = crop + normal * pose.offset_mm
        crop = crop + row_dir * pose.shift_mm[0] + col_dir * pose.shift_mm[1]
        step = spacing / pose.scale
        half = (size - 1) / 2.0
        return Plane(origin=crop - half * step * (row_dir + col_dir), x_vec=col_dir * step,
                     y_vec=row_dir * step)

    def sample(self, pose: PlanePose, size: int, spacing: float, *, tissue: bool = False,
               target: str = "corpus_callosum", synth: SynthParams | None = None,
               rng: np.random.Generator | None = None):
        """(image, target mask) on a ``size`` x ``size`` grid of ``spacing`` mm for ``pose``; with
        ``tissue=True`` also the tissue class map and brain mask of the plane (for contrast
        augmentation). ``target``: "corpus_callosum" (on the midline, empty beyond 8 mm from it)
        or "brain" (the brain mask on the sampled plane itself). With ``synth`` the image is
        synthesised from the labels (white matter ~1) instead of looked up in the scan."""
        if synth is not None and (self.groups is None or self.outside is None):
            raise ValueError(f"{self.name}: no label maps for synthesis (load with synthesis=True)")
        if synth is not None and rng is None:
            raise ValueError("synthesis draws texture: pass its generator (rng)")
        brain_target = target == "brain"
        if brain_target and self.brain is None:
            raise ValueError(f"{self.name}: no brain mask")
        if tissue and self.tissue is None:
            raise ValueError(f"{self.name}: no tissue classes")
        plane = self.plane(pose, size, spacing, crop_from_midline=brain_target)
        normal = self._frame(pose)[2]  # +L (Plane.normal = x cross y points the other way)
        index = np.arange(size, dtype=np.float64)
        grid = (plane.origin[None, None, :] + index[:, None, None] * plane.y_vec[None, None, :]
                + index[None, :, None] * plane.x_vec[None, None, :])
        n_planes = max(1, int(round(pose.slab_mm)))
        offsets = np.linspace(-pose.slab_mm / 2, pose.slab_mm / 2, n_planes) if n_planes > 1 else [0.0]
        if synth is not None:
            assert self.groups is not None and self.outside is not None and rng is not None  # checked above
            # one texture field for every plane of the slab: tissue texture runs across 1 mm
            # planes, and independent fields would average away by sqrt(planes)
            noise = texture_field((size, size), rng)
            image = np.mean([synthesise(self._lookup(self.groups, grid + normal * o, order=0),
                                        self._lookup(self.outside, grid + normal * o, order=0), synth, noise)
                             for o in offsets], axis=0)
            # on the scan's scale (white matter 110, as in FreeSurfer's T1.mgz), so that the
            # shared augmentation after division by white_level adds the same relative noise
            image = image * 110.0
        else:
            image = np.mean([self._lookup(self.image, grid + normal * o) for o in offsets], axis=0)
        brain = self._lookup(self.brain, grid, order=0) if self.brain is not None else None
        if brain_target:
            assert brain is not None  # a brain target needs self.brain (checked above)
            label = brain > 0
        else:
            label = self.cc_target(grid)  # the same image coordinates, projected onto the midline
            if abs(pose.offset_mm) > 8.0:
                label = np.zeros_like(label)
        if tissue:
            assert self.tissue is not None  # checked above
            return image.astype(np.float32), label, self._lookup(self.tissue, grid, order=0), brain
        return image.astype(np.float32), label

    def sample_localizer(self, *, rotation_deg: float = 0.0, midline_offset_mm: float = 0.0,
                         n_slices: int = 5, gap_mm: float = 5.0, size: int = 256,
                         spacing: float = 1.0, scale: float = 10.0, target: str = "corpus_callosum"):
        """A thick-slice sagittal localizer through this head, as a Volume (one shared in-plane
        grid, slices ``gap_mm`` apart along the normal, each a ``gap_mm`` slab) with the label of
        each slice on the Volume's own pixels: the CC (empty beyond 8 mm from the midline) or,
        with ``target="brain"``, the brain mask on the slice's central plane."""
        from medseg.volume import Volume, VolumeMeta

        brain = self.brain
        if target == "brain" and brain is None:
            raise ValueError(f"{self.name}: no brain mask")
        pose = PlanePose(rotation_deg=rotation_deg)
        plane = self.plane(pose, size, spacing)
        normal = self._frame(pose)[2]
        offsets = (np.arange(n_slices) - (n_slices - 1) / 2) * gap_mm + midline_offset_mm
        index = np.arange(size, dtype=np.float64)
        grid = (plane.origin[None, None, :] + index[:, None, None] * plane.y_vec[None, None, :]
                + index[None, :, None] * plane.x_vec[None, None, :])
        label = self.cc_target(grid)
        slabs = np.linspace(-gap_mm / 2, gap_mm / 2, max(1, int(round(gap_mm))))
        slices, labels = [], []
        for offset in offsets:
            slices.append(np.mean([self._lookup(self.image, grid + normal * (offset + o)) for o in slabs], axis=0))
            if target == "brain":
                assert brain is not None  # checked above
                labels.append(self._lookup(brain, grid + normal * offset, order=0) > 0)
            else:
                labels.append(label if abs(offset) <= 8.0 else np.zeros_like(label))
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1] = plane.x_vec, plane.y_vec
        affine[:3, 2] = normal * gap_mm
        affine[:3, 3] = plane.origin + normal * offsets[0]
        array = np.stack([sl.T for sl in slices], axis=-1) * scale
        meta = VolumeMeta(modality="MR", description=f"{self.name} simulated localizer")
        return Volume(array.astype(np.float32), affine, meta), labels

    def _lookup(self, volume: np.ndarray, points: np.ndarray, order: int = 1) -> np.ndarray:
        shape = points.shape[:-1]
        idx = points.reshape(-1, 3) @ self.inverse_affine[:3, :3].T + self.inverse_affine[:3, 3]
        values = ndimage.map_coordinates(volume, idx.T, order=order, mode="constant", cval=0.0)
        return values.reshape(shape)
