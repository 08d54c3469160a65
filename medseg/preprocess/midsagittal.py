"""Mid-sagittal plane of a 3D head by bilateral symmetry (mirror registration, SimpleITK).

The head is mirrored across the left-right plane through its centre and the mirror image is
registered rigidly to the original (correlation metric, 2 resolution levels on ~3 mm voxels).
The composition S = mirror o rigid is a reflection of the head onto itself; its -1 eigenvector is
the mid-sagittal normal and the midpoint of a point and its image lies on the plane.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.volume import Volume


def midsagittal_plane(volume: Volume, head_mask: np.ndarray, *, working_spacing_mm: float = 3.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit normal towards +L) of the plane of bilateral symmetry, in LPS mm.

    The registration runs on the image reoriented to RAS (axes permuted and flipped, no
    interpolation), so the plane does not depend on how the array is stored."""
    volume, head_mask = (volume.reorient("RAS"),
                         np.asarray(volume.with_array(np.asarray(head_mask, np.uint8)).reorient("RAS").array) > 0)
    image = volume.with_array(np.asarray(volume.array, dtype=np.float32) * head_mask).to_sitk()
    shrink = [max(1, int(round(working_spacing_mm / s))) for s in volume.spacing]
    image = sitk.SmoothingRecursiveGaussian(sitk.Shrink(image, shrink), working_spacing_mm / 2)
    centre = volume.world_coordinates(np.argwhere(head_mask).mean(axis=0)[None])[0]  # affine: mean commutes

    mirror = sitk.AffineTransform(3)
    mirror.SetMatrix((-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    mirror.SetCenter(tuple(centre))
    mirrored = sitk.Resample(image, image, mirror, sitk.sitkLinear, 0.0)

    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(tuple(centre))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsCorrelation()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                    numberOfIterations=150, relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(rigid, inPlace=False)
    found = method.Execute(image, mirrored)  # maps original-space points into the mirror image

    def apply(transform, point):
        return np.asarray(transform.TransformPoint(tuple(float(v) for v in point)))

    def symmetry(point):
        return apply(mirror, apply(found, point))

    # Linear part of the composed reflection, from its action on the axes.
    origin = symmetry(centre)
    linear = np.column_stack([symmetry(centre + axis) - origin for axis in np.eye(3)])
    values, vectors = np.linalg.eig(linear)
    normal = np.real(vectors[:, int(np.argmin(np.real(values)))])
    normal /= np.linalg.norm(normal)
    if normal[0] < 0:
        normal = -normal
    point = (centre + origin) / 2.0
    return point, normal
