"""The one image type that flows through medseg.

World convention: **DICOM LPS** (patient Left, Posterior, Superior are +x, +y, +z), the same as
DICOM, ITK and SimpleITK. Files in RAS (NIfTI, MGZ) are converted exactly once, at the I/O edge
(:mod:`medseg.io.nifti`). ``Volume.affine`` maps a voxel index ``(i, j, k)`` to LPS millimetres.

Array axes follow nibabel: for an image read from DICOM, ``i`` runs along a row (the DICOM column
index), ``j`` down the rows, ``k`` across slices. An optional 4th axis holds volumes acquired at the
same positions (echoes, time points, diffusion directions).

Orientation codes use nibabel's convention (each letter names the direction the axis *increases
towards*; ``"RAS"`` is nibabel/MNI's canonical, FreeSurfer's conformed space is ``"LIA"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import nibabel as nib

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def axcodes(affine: np.ndarray) -> str:
    """The orientation code of an LPS ``affine`` in nibabel's convention (``"RAS"``, ``"PIR"``...),
    as ``nibabel.aff2axcodes`` gives it for the RAS affine: nibabel's ``io_orientation`` ported
    (the closest shear-free rotation by SVD, then for each array axis, the surest first, the
    world axis it changes most, each world axis taken once), so that reading headers never imports nibabel, whose NIfTI
    module imports pydicom (a third of a second of ``medseg info``). Tested against nibabel on
    oblique, flipped and degenerate affines."""
    ras = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    rzs = ras[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    zooms[zooms == 0] = 1
    rs = rzs / zooms
    left, singular, right = np.linalg.svd(rs, full_matrices=False)
    keep = singular > singular.max() * 3 * np.finfo(singular.dtype).eps
    rotation = left[:, keep] @ right[keep]
    codes = ["?"] * 3  # (nibabel: None, an axis with no world direction)
    for axis in np.argsort(np.min(-(rotation**2), axis=0), kind="stable"):  # the surest axis first
        column = rotation[:, axis]
        if np.allclose(column, 0):
            continue
        world = int(np.argmax(np.abs(column)))
        codes[axis] = _RAS_LABELS[world][1 if column[world] > 0 else 0]
        rotation[world, :] = 0
    return "".join(codes)

Interpolation = Literal["linear", "nearest", "bspline"]


@dataclass(frozen=True)
class VolumeMeta:
    """Descriptive metadata that travels with a Volume (never patient-identifying in logs).

    Attributes:
        modality: DICOM Modality (``"MR"``) or ``""`` when unknown (NIfTI input).
        study_uid: StudyInstanceUID, or a stable id derived from the file for non-DICOM input.
        series_uid: SeriesInstanceUID.
        stack: which stack of a split series (e.g. ``"sag"`` of a 3-plane localizer), or ``""``.
        description: SeriesDescription.
        source: where the image came from (a file or folder path).
        series_number: DICOM SeriesNumber, or None.
        frame_of_reference_uid: DICOM FrameOfReferenceUID, or ``""``.
        is_label: the array holds labels (nearest-neighbour interpolation is used when resampling).
        dicom: DICOM study/patient attributes needed to write derived series back to a PACS
            (keyword -> value). Kept out of ``repr`` so that they never reach a log line.
    """

    modality: str = ""
    study_uid: str = ""
    series_uid: str = ""
    stack: str = ""
    description: str = ""
    source: str = ""
    series_number: int | None = None
    frame_of_reference_uid: str = ""
    is_label: bool = False
    dicom: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def replace(self, **changes: Any) -> "VolumeMeta":
        return dataclasses.replace(self, **changes)


def corner_indices(shape: Sequence[int]) -> np.ndarray:
    """The voxel indices (8 x 3, float) of the eight corner voxels of a 3D grid of ``shape``."""
    return np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                     for k in (0, shape[2] - 1)], dtype=np.float64)


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Volume:
    """An immutable image: array + 4x4 voxel->LPS affine + metadata.

    The array is stored read-only; derive new volumes with :meth:`with_array`.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: VolumeMeta = field(default_factory=VolumeMeta)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim not in (2, 3, 4):
            raise ValueError(f"Volume needs a 2D, 3D or 4D array, got shape {array.shape}")
        if array.ndim == 2:
            array = array[:, :, None]
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got {affine!r}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("affine is singular (zero voxel size or degenerate directions)")
        object.__setattr__(self, "array", _readonly(array))
        object.__setattr__(self, "affine", _readonly(affine.copy()))
        if isinstance(self.meta.dicom, dict):
            object.__setattr__(
                self, "meta", self.meta.replace(dicom=MappingProxyType(dict(self.meta.dicom)))
            )

    # ---- derived geometry -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        i, j, k = self.array.shape[:3]  # the array is 3D or 4D (see __post_init__)
        return i, j, k

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit LPS directions of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def orientation(self) -> str:
        """Orientation code in nibabel's convention, e.g. ``"LAS"``, ``"PSR"``."""
        return axcodes(self.affine)

    @property
    def ras_affine(self) -> np.ndarray:
        """The affine in RAS (as NIfTI/nibabel store it)."""
        return LPS_TO_RAS @ self.affine

    def world_coordinates(self, indices: npt.ArrayLike) -> np.ndarray:
        """LPS coordinates (N x 3) of voxel indices (N x 3, may be fractional)."""
        ijk = np.atleast_2d(np.asarray(indices, dtype=np.float64))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def voxel_coordinates(self, points: npt.ArrayLike) -> np.ndarray:
        """Fractional voxel indices (N x 3) of LPS points (N x 3)."""
        xyz = np.atleast_2d(np.asarray(points, dtype=np.float64))
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    # ---- derivation ---------------------------------------------------------------------------
    def with_array(
        self, array: np.ndarray, *, affine: np.ndarray | None = None, **meta_changes: Any
    ) -> "Volume":
        """A new Volume with another array (same grid unless ``affine`` is given)."""
        array = np.asarray(array)
        if affine is None and array.shape[:3] != self.spatial_shape:
            raise ValueError(
                f"with_array: spatial shape {array.shape[:3]} differs from {self.spatial_shape};"
                " pass the matching affine"
            )
        meta = self.meta.replace(**meta_changes) if meta_changes else self.meta
        return Volume(array, self.affine if affine is None else affine, meta)

    def as_label(self) -> "Volume":
        return Volume(self.array, self.affine, self.meta.replace(is_label=True))

    def reorient(self, codes: str = "RAS") -> "Volume":
        """Permute/flip axes (no interpolation) so that the orientation code becomes ``codes``."""
        from nibabel import orientations as nio

        ras = LPS_TO_RAS @ self.affine
        current = nio.io_orientation(ras)
        target = nio.axcodes2ornt(tuple(codes))
        transform = nio.ornt_transform(current, target)
        array = nio.apply_orientation(self.array, transform)
        new_ras = ras @ nio.inv_ornt_aff(transform, self.spatial_shape)
        return Volume(np.ascontiguousarray(array), LPS_TO_RAS @ new_ras, self.meta)

    def permute_axes(self, order: Sequence[int]) -> "Volume":
        """The same voxels with the array axes reordered: new axis ``n`` is old axis ``order[n]``
        (a 4th axis stays last). No interpolation; every voxel keeps its world position."""
        axes = tuple(int(a) for a in order)
        if sorted(axes) != [0, 1, 2]:
            raise ValueError(f"permute_axes needs a permutation of (0, 1, 2), got {axes}")
        array = np.transpose(self.array, axes + ((3,) if self.array.ndim == 4 else ()))
        affine = self.affine.copy()
        affine[:3, :3] = self.affine[:3, list(axes)]
        return Volume(np.ascontiguousarray(array), affine, self.meta)

    def resample_to(
        self,
        reference: "Volume",
        *,
        interpolation: Interpolation | None = None,
        default_value: float = 0.0,
    ) -> "Volume":
        """Resample onto ``reference``'s grid (SimpleITK). Labels default to nearest neighbour."""
        from medseg.resample import resample_to_grid

        return resample_to_grid(
            self,
            reference.spatial_shape,
            reference.affine,
            interpolation=interpolation,
            default_value=default_value,
        )

    # ---- conversions --------------------------------------------------------------------------
    def to_nibabel(self) -> nib.Nifti1Image:
        """A NIfTI-1 image (RAS affine in both sform and qform, code 1 = scanner)."""
        import nibabel as nib

        image = nib.Nifti1Image(np.asarray(self.array), self.ras_affine)
        image.set_sform(self.ras_affine, code=1)
        image.set_qform(self.ras_affine, code=1)
        image.header.set_xyzt_units("mm", "sec")
        return image

    @classmethod
    def from_nibabel(cls, image: Any, meta: VolumeMeta | None = None) -> "Volume":
        """From any nibabel spatial image (NIfTI, MGH/MGZ...): RAS affine converted to LPS."""
        array = np.asanyarray(image.dataobj)
        return cls(array, LPS_TO_RAS @ image.affine, meta or VolumeMeta())

    def to_sitk(self, volume_index: int | None = None):
        """A SimpleITK image (3D; pass ``volume_index`` to take one volume of a 4D array)."""
        import SimpleITK as sitk

        array = self.array
        if array.ndim == 4:
            if volume_index is None:
                raise ValueError("4D Volume: pass volume_index to convert one volume to SimpleITK")
            array = array[..., volume_index]
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image, meta: VolumeMeta | None = None) -> "Volume":
        """From a 3D SimpleITK image (ITK's physical space is LPS already)."""
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise ValueError(f"from_sitk needs a 3D image, got {image.GetDimension()}D")
        array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        affine = np.eye(4)
        affine[:3, :3] = direction * np.asarray(image.GetSpacing())
        affine[:3, 3] = image.GetOrigin()
        return cls(array, affine, meta or VolumeMeta())

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing=({spacing}) mm, "
            f"orientation={self.orientation}, modality={self.meta.modality!r}, "
            f"description={self.meta.description!r})"
        )
