"""Whether the 3D symmetry plane follows a turned head (equivariance), on real FreeSurfer heads.

For each head (default the held-out sub-08 and sub-09), the symmetry plane of its T1
(``medseg.preprocess.midsagittal.midsagittal_plane``, with the head mask the positioning uses)
is found once unturned, then with the head turned about its centre by a known rotation R: yaw
(about head-foot) of -20..+20 deg and roll (about anterior-posterior) of +-15 deg. ``--turn
affine`` turns the image's affine only (the voxels stay as they are); ``--turn voxels`` resamples
the turned head onto the unturned grid (linear). Printed per case: the angle between the plane
found and R applied to the unturned plane, their distance at the unturned plane's point, and
the seconds the search took.

Usage: python pipelines/evaluate_symmetry_plane.py [--subjects sub-08 sub-09] [--turn affine]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from medseg.examples import data_root
from medseg.io import read_nifti
from medseg.preprocess.midsagittal import midsagittal_plane
from medseg.preprocess.normalize import foreground_mask
from medseg.resample import resample_to_grid
from medseg.volume import Volume

CASES = [("yaw", d) for d in (-20, -15, -10, -8, -5, 5, 8, 10, 15, 20)] + [("roll", d) for d in (-15, 15)]


def rotation(kind: str, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    if kind == "yaw":  # about head-foot (LPS z)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # roll: about anterior-posterior (LPS y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="+", default=["sub-08", "sub-09"])
    parser.add_argument("--turn", choices=["affine", "voxels"], default="affine")
    args = parser.parse_args()
    worst_angle = worst_distance = 0.0
    for subject in args.subjects:
        t1 = read_nifti(data_root() / "brain" / "fs-training" / subject / "T1.mgz")
        t1 = t1.with_array(np.asarray(t1.array, np.float32))
        head = foreground_mask(t1)
        point0, normal0 = midsagittal_plane(t1, head)
        centre = t1.world_coordinates(np.argwhere(head).mean(axis=0)[None])[0]
        for kind, degrees in CASES:
            turn = rotation(kind, degrees)
            move = np.eye(4)
            move[:3, :3], move[:3, 3] = turn, centre - turn @ centre
            turned = Volume(t1.array, move @ t1.affine, t1.meta)
            if args.turn == "voxels":
                turned = resample_to_grid(turned, t1.spatial_shape, t1.affine, interpolation="linear")
            mask = head if args.turn == "affine" else foreground_mask(turned)
            started = time.perf_counter()
            point, normal = midsagittal_plane(turned, mask)
            seconds = time.perf_counter() - started
            expected_normal = turn @ normal0
            expected_point = turn @ (point0 - centre) + centre
            angle = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(normal, expected_normal)))))))
            distance = abs(float(np.dot(expected_point - point, normal)))
            worst_angle, worst_distance = max(worst_angle, angle), max(worst_distance, distance)
            print(f"{subject} {kind} {degrees:+4d} deg: plane {angle:5.2f} deg and {distance:5.2f} mm from "
                  f"the turned unturned plane, {seconds:.2f} s", flush=True)
    print(f"worst: {worst_angle:.2f} deg, {worst_distance:.2f} mm ({args.turn})")


if __name__ == "__main__":
    main()
