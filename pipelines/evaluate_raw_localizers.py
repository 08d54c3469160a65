"""Thick-slice localizers cut from a real raw 3D T1 (no labels): CC area, whether the CC alone was
found, and how the plan follows a known pitch of the head.

The 3D T1 (default: the shared Siemens XA30 enhanced T1) is positioned first; its CC centre c and
mid-sagittal normal n fix the head. The localizer grid is the scanner's: sagittal slices on the
scanner's left-right axis (1 mm pixels, 256 x 256, columns posterior, rows inferior) through
c + 1 mm, for three protocols (5 x 5 mm, 15 x 5 mm, 35 x 4 mm: slices x slab). The head is
pitched about n through c by -10, 0, +10 deg: the localizer at scanner point p is the T1 at
c + R^T (p - c), averaged over the slab. Each localizer runs through the whole positioning.

Per localizer: area (mm2), whether the segmenter kept the CC alone or fell back to the network's
mask (its warning), the final angle, the error against the known motion (the final direction of
the unturned localizer turned by R) and, unturned, the difference from the 3D T1's own plan.

Usage: python pipelines/evaluate_raw_localizers.py [--t1 PATH] [--json OUT] [--model-dir DIR] [--no-cc-alone]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from evaluate_rotated_localizers import rotation, turned_slabs  # this folder is on sys.path when a script runs

from medseg.examples import data_root
from medseg.geometry import physical_angle
from medseg.io import load_volume
from medseg.positioning.pipeline import position_volume
from medseg.segment.infer import CCSegmenter
from medseg.volume import Volume

PROTOCOLS = ((5, 5.0), (15, 5.0), (35, 4.0))  # slices, slab mm (slices are contiguous)
PITCHES = (-10.0, 0.0, 10.0)
FALLBACK = "CC-alone step left no plausible CC"


def localizer(t1: Volume, centre: np.ndarray, turn: np.ndarray, slices: int, slab_mm: float) -> Volume:
    """Sagittal slabs on the scanner's axes of the head turned by ``turn`` about ``centre``."""
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 1.0, 0.0)   # columns: posterior (LPS +y)
    affine[:3, 1] = (0.0, 0.0, -1.0)  # rows: inferior
    affine[:3, 2] = (slab_mm, 0.0, 0.0)  # slices: towards the left
    first = centre + np.array([1.0 - (slices - 1) / 2 * slab_mm, 0.0, 0.0])
    affine[:3, 3] = first - 127.5 * affine[:3, 0] - 127.5 * affine[:3, 1]
    grid = Volume(np.zeros((256, 256, slices), np.float32), affine)
    image = turned_slabs(np.asarray(t1.array, np.float32), np.linalg.inv(t1.affine), grid, centre, turn, slab_mm)
    return grid.with_array(np.rint(np.clip(image, 0, 32767)).astype(np.int16))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1", type=Path,
                        default=data_root() / "dicom" / "siemens-xa30-enhanced" / "5_anat-T1w_acq-tfl")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--no-cc-alone", action="store_true",
                        help="the network's mask as it is (default: the rule-based CC-alone step only for a "
                             "network whose contract says it was trained on FreeSurfer's label as it is)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not args.t1.exists():
        print(f"no T1 at {args.t1} (set MEDSEG_DATA)", file=sys.stderr)
        return 1
    from medseg.infer.runtime import load_runtime

    segmenter = CCSegmenter(load_runtime(models_dir=args.model_dir), cc_alone=False if args.no_cc_alone else None)
    t1 = load_volume(args.t1)
    reference = position_volume(t1, segmenter)
    mask = np.argwhere(np.asarray(reference.segmentation.mask.array) > 0)
    centre = reference.segmentation.mask.world_coordinates(mask).mean(axis=0)
    normal = np.asarray(reference.segmentation.midsagittal_normal, float)
    base_3d = reference.localization.final.angle_deg
    print(f"3D T1: CC {reference.segmentation.area_mm2:.0f} mm2, final angle {base_3d:+.2f} deg"
          + ("" if not reference.segmentation.warnings else f" ({'; '.join(reference.segmentation.warnings)})"))
    rows = []
    print(f"{'protocol':>10} {'pitch':>6} {'area mm2':>9} {'CC':>14} {'angle':>8} {'error':>7} {'vs 3D':>7}")
    for slices, slab in PROTOCOLS:
        d0 = None
        for pitch in sorted(PITCHES, key=abs):  # the unturned head first
            turn = rotation(normal, pitch)
            result = position_volume(localizer(t1, centre, turn, slices, slab), segmenter)
            direction = np.asarray(result.localization.final.direction_lps, float)
            if pitch == 0.0:
                d0 = direction
            assert d0 is not None
            found = result.localization.final.angle_deg
            expected = physical_angle(turn @ d0)
            kept = "network mask" if any(FALLBACK in w for w in result.segmentation.warnings) else "alone"
            row = {"protocol": f"{slices} x {slab:g} mm", "pitch_deg": pitch,
                   "area_mm2": round(float(result.segmentation.area_mm2), 1), "cc": kept,
                   "found_deg": round(float(found), 3), "error_deg": round(float(found - expected), 3),
                   "vs_3d_deg": round(float(found - base_3d), 3) if pitch == 0.0 else None}
            rows.append(row)
            vs = f"{row['vs_3d_deg']:+7.2f}" if row["vs_3d_deg"] is not None else f"{'':>7}"
            print(f"{row['protocol']:>10} {pitch:+6.0f} {row['area_mm2']:9.0f} {kept:>14} {found:+8.2f} "
                  f"{row['error_deg']:+7.2f} {vs}")
    alone = [r for r in rows if r["cc"] == "alone"]
    errors = [abs(r["error_deg"]) for r in rows]
    print(f"CC alone on {len(alone)} of {len(rows)}"
          + (f" ({min(r['area_mm2'] for r in alone):.0f}-{max(r['area_mm2'] for r in alone):.0f} mm2)" if alone else "")
          + f"; pitch error worst {max(errors):.2f} deg; 3D T1 {reference.segmentation.area_mm2:.0f} mm2")
    if args.json:
        args.json.write_text(json.dumps({"t1_area_mm2": reference.segmentation.area_mm2,
                                         "t1_final_deg": base_3d, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
