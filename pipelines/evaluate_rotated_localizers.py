"""Pitch error on sagittal localizers of a real head turned in 3D, stored left-right first.

For each held-out FreeSurfer head (sub-08, sub-09: never seen in training) the scanner's
localizer grid is fixed (5 slices x 5 mm slabs, 1 mm pixels, through the head's midline +1 mm)
and the head is turned about its CC centre by a known rotation R: pitch (about left-right) of
-12..+12 deg combined with roll (about anterior-posterior) and yaw (about head-foot) of +-4 deg.
Each localizer is resampled from the 3D T1 (the image at scanner point p is the T1 at
c + R^T (p - c), averaged over the slab), stored as NIfTI reoriented to RAS (left-right first, as
``fslreorient2std`` writes it), read back, and runs through the whole positioning (N4, CC,
angles). The expected final angle is that of R d0, d0 being the final direction found for the
unturned head; the pitch error is found minus expected.

``--n4`` chooses the bias correction the positioning runs with: ``default`` (what the pipeline
does with a localizer, :data:`medseg.positioning.pipeline.LOCALIZER_N4`), ``off``, ``slab`` (the
fast profile fitted on the slices the CC search reads), ``full`` (on every slice), or
``levels=N,iterations=M`` (the fast profile on every slice with N fitting levels of M
iterations), so each choice for localizers is re-measured by one run.

``--bias B`` multiplies every localizer by a receive-coil-like shading fixed in scanner space
(it does not turn with the head): ``exp(B * (0.6 a + 0.3 s + 0.4 a^2))`` with a, s the scanner's
anterior-posterior and head-foot coordinates scaled to -1..1 over 120 mm about the CC centre,
B = 0.5 shading the back of the head about 1.6 times brighter than the front. The line ``unturned head`` prints the
final angle of the unturned head, to be compared between runs with and without bias (the
errors themselves are relative to that run's unturned head).

Usage: python pipelines/evaluate_rotated_localizers.py [--subjects sub-08 sub-09] [--n4 default]
       [--bias 0.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.examples import data_root
from medseg.geometry import physical_angle
from medseg.io import read_nifti, write_nifti
from medseg.positioning.pipeline import position_volume
from medseg.preprocess.n4 import N4Options
from medseg.segment.data import Subject
from medseg.segment.infer import CCSegmenter
from medseg.volume import Volume

PITCHES = (-12.0, -6.0, 0.0, 6.0, 12.0)
ROLL_YAW = ((0.0, 0.0), (4.0, 0.0), (-4.0, 0.0), (0.0, 4.0), (0.0, -4.0), (4.0, 4.0), (-4.0, -4.0))


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def turned_slabs(image: np.ndarray, inverse_affine: np.ndarray, grid: Volume, centre: np.ndarray,
                 turn: np.ndarray, slab_mm: float) -> np.ndarray:
    """The slabs of ``grid`` (float32, its spatial shape) through ``image`` (a voxel array with
    ``inverse_affine``, LPS mm -> voxel) turned by ``turn`` about ``centre``: at scanner point p
    the image at c + R^T (p - c), averaged over ``slab_mm`` along the grid's slice normal."""
    shape = grid.spatial_shape
    index = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    normal = grid.affine[:3, 2] / np.linalg.norm(grid.affine[:3, 2])
    centres = grid.world_coordinates(index)  # the slab centres; each offset moves them along the normal
    values = np.zeros(len(index), np.float32)
    offsets = np.linspace(-slab_mm / 2, slab_mm / 2, max(int(round(slab_mm)), 1))
    for offset in offsets:
        points = centres + offset * normal
        source = (points - centre) @ turn + centre  # rows: R^T (p - c) + c
        voxels = source @ inverse_affine[:3, :3].T + inverse_affine[:3, 3]
        values += ndimage.map_coordinates(image, voxels.T, order=1, mode="constant")
    return (values / len(offsets)).reshape(shape)


def turned_localizer(subject: Subject, grid: Volume, turn: np.ndarray, slab_mm: float = 5.0,
                     bias: float = 0.0) -> Volume:
    """The localizer on ``grid`` (the scanner's) of the head turned by ``turn`` about its CC centre."""
    shape = grid.spatial_shape
    image = turned_slabs(subject.image, subject.inverse_affine, grid, subject.centre, turn, slab_mm) * 10.0
    if bias:
        index = np.indices(shape).reshape(3, -1).T.astype(np.float64)
        scanner = grid.world_coordinates(index) - subject.centre  # LPS: y posterior, z superior
        a, s = scanner[:, 1] / 120.0, scanner[:, 2] / 120.0
        image = image * np.exp(bias * (0.6 * a + 0.3 * s + 0.4 * a ** 2)).reshape(shape)
    return grid.with_array(np.rint(np.clip(image, 0, 32767)).astype(np.int16))


def n4_choice(text: str) -> dict:
    """The position_volume keywords (n4, n4_options, n4_mode) of an ``--n4`` value."""
    if text == "default":
        return {}
    if text == "off":
        return {"n4": False}
    if text in ("slab", "full"):
        return {"n4_mode": text}
    fields = dict(part.split("=") for part in text.split(","))
    levels, iterations = int(fields["levels"]), int(fields["iterations"])
    return {"n4_mode": "full", "n4_options": dataclasses.replace(
        N4Options.fast(), iterations=(iterations,) * levels, iterations_2d=(iterations,) * min(levels, 2))}


def evaluate_subject(subject: Subject, segmenter: CCSegmenter, tmp: Path, n4: str = "default",
                     bias: float = 0.0) -> list[dict]:
    n4_keywords = n4_choice(n4)
    grid, _ = subject.sample_localizer(rotation_deg=0.0, midline_offset_mm=1.0)
    rows, d0 = [], None
    for pitch in PITCHES:
        for roll, yaw in ROLL_YAW:
            turn = (rotation(subject.normal, pitch) @ rotation(subject.posterior, roll)
                    @ rotation(subject.inferior, yaw))
            localizer = turned_localizer(subject, grid, turn, bias=bias).reorient("RAS")
            path = write_nifti(localizer, tmp / f"{subject.name}_{pitch:+.0f}_{roll:+.0f}_{yaw:+.0f}.nii.gz")
            volume = read_nifti(path)
            result = position_volume(volume, segmenter, **n4_keywords)
            direction = np.asarray(result.localization.final.direction_lps)
            if pitch == 0 and roll == 0 and yaw == 0:
                d0 = direction
            rows.append({"subject": subject.name, "pitch": pitch, "roll": roll, "yaw": yaw,
                         "orientation": volume.orientation, "found_deg": result.localization.final.angle_deg,
                         "turn": turn})
    base = physical_angle(d0)
    print(f"{subject.name}: unturned head, final angle {base:+.3f} deg (N4 {n4}, bias {bias:g})")
    for row in rows:
        row["expected_deg"] = physical_angle(row.pop("turn") @ d0)
        row["error_deg"] = row["found_deg"] - row["expected_deg"]
        row["head_motion_deg"] = row["expected_deg"] - base
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="+", default=["sub-08", "sub-09"])
    parser.add_argument("--n4", default="default", help="default | off | slab | full | levels=N,iterations=M")
    parser.add_argument("--bias", type=float, default=0.0, help="coil-like shading strength (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    segmenter = CCSegmenter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.subjects:
            subject = Subject.load(data_root() / "brain" / "fs-training" / name)
            rows += evaluate_subject(subject, segmenter, Path(tmp), args.n4, args.bias)
    print(f"{'subject':8s} {'pitch':>6s} {'roll':>5s} {'yaw':>5s} {'layout':>6s} {'expected':>9s} "
          f"{'found':>8s} {'error':>7s}")
    for r in rows:
        print(f"{r['subject']:8s} {r['pitch']:+6.0f} {r['roll']:+5.0f} {r['yaw']:+5.0f} {r['orientation']:>6s} "
              f"{r['expected_deg']:+9.2f} {r['found_deg']:+8.2f} {r['error_deg']:+7.2f}")
    errors = np.abs([r["error_deg"] for r in rows])
    print(f"\nN4: {args.n4}, bias {args.bias:g}; pitch error over {len(rows)} turned localizers: "
          f"mean {errors.mean():.2f} deg, "
          f"worst {errors.max():.2f} deg, {int(np.sum(errors <= 1.0))}/{len(rows)} within 1 deg "
          "(target: worst <= 1 deg)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if errors.max() <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
