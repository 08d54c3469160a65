"""Agreement of medseg's DICOM loader with dcm2niix, the field's reference converter.

For every series folder under the DICOM root, run dcm2niix and medseg on the same files and compare
each dcm2niix output with the medseg volume that covers the same voxels:
- the world (LPS) coordinates of the voxel grid (max error over the grid, mm; tolerance 1e-3),
- the voxel values after matching the axes (max absolute difference, and relative to the range).

Usage: python pipelines/compare_dcm2niix.py [DICOM_ROOT] [--json OUT.json]
Exit status 1 if any dcm2niix output has no matching medseg volume or disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.examples import data_root
from medseg.io import scan
from medseg.volume import LPS_TO_RAS, corner_indices

WORLD_TOLERANCE_MM = 1e-3


def dcm2niix_binary() -> str:
    found = shutil.which("dcm2niix")
    if found:
        return found
    import dcm2niix  # the PyPI package ships the binary

    return str(Path(dcm2niix.__file__).parent / "dcm2niix")


def run_dcm2niix(folder: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([dcm2niix_binary(), "-z", "n", "-b", "n", "-f", "%s_%d_%e_%j", "-o", str(out),
                    str(folder)], check=True, capture_output=True)
    return time.perf_counter() - start


def match(reference_affine: np.ndarray, reference_shape: tuple[int, ...], candidate) -> dict | None:
    """Map the reference grid onto ``candidate``'s voxel grid; None unless it is a pure axis
    permutation/flip with integer offsets that stays inside the candidate."""
    mapping = np.linalg.inv(candidate.affine) @ reference_affine
    rotation = mapping[:3, :3]
    permutation = np.rint(rotation)
    if np.max(np.abs(rotation - permutation)) > 1e-3 or abs(abs(np.linalg.det(permutation)) - 1) > 1e-6:
        return None
    offset = mapping[:3, 3]
    if np.max(np.abs(offset - np.rint(offset))) > 1e-2:
        return None
    corners = corner_indices(reference_shape)
    indices = np.rint(corners @ permutation.T + np.rint(offset)).astype(int)
    if indices.min() < 0 or np.any(indices.max(axis=0) >= np.array(candidate.spatial_shape)):
        return None
    world_ref = corners @ reference_affine[:3, :3].T + reference_affine[:3, 3]
    world_cand = indices @ candidate.affine[:3, :3].T + candidate.affine[:3, 3]
    return {"permutation": permutation, "offset": np.rint(offset).astype(int),
            "world_error_mm": float(np.max(np.linalg.norm(world_ref - world_cand, axis=1)))}


def sample(candidate_array: np.ndarray, shape: tuple[int, ...], permutation: np.ndarray,
           offset: np.ndarray) -> np.ndarray:
    grid = np.indices(shape[:3]).reshape(3, -1).T
    idx = np.rint(grid @ permutation.T + offset).astype(int)
    values = candidate_array[idx[:, 0], idx[:, 1], idx[:, 2]]
    return values.reshape(*shape[:3], *candidate_array.shape[3:])


def compare_folder(folder: Path, root: Path) -> tuple[list[dict], float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d2n_time = run_dcm2niix(folder, Path(tmp))
        start = time.perf_counter()
        volumes = [(ref, ref.load()) for ref in scan(folder).series if ref.ok]
        medseg_time = time.perf_counter() - start
        rows = []
        for nii in sorted(Path(tmp).glob("*.nii")):
            image = nib.load(nii)
            data = np.asarray(image.get_fdata(dtype=np.float64))
            affine = LPS_TO_RAS @ image.affine  # RAS -> LPS
            row = {"folder": str(folder.relative_to(root)), "dcm2niix": nii.name,
                   "shape": list(data.shape), "medseg": None, "world_error_mm": None,
                   "max_abs_diff": None, "value_range": float(np.ptp(data)), "ok": False}
            for ref, volume in volumes:
                found = match(affine, data.shape, volume)
                if found is None:
                    continue
                ours = sample(np.asarray(volume.array, dtype=np.float64), data.shape,
                              found["permutation"], found["offset"])
                if ours.shape != data.shape:
                    ours = ours.reshape(data.shape) if ours.size == data.size else None
                if ours is None:
                    continue
                diff = float(np.max(np.abs(ours - data)))
                tolerance = 1e-4 * max(1.0, float(np.max(np.abs(data)))) + 1e-3
                ok = found["world_error_mm"] <= WORLD_TOLERANCE_MM and diff <= tolerance
                if row["medseg"] is None or ok:
                    row.update(medseg=ref.key, world_error_mm=found["world_error_mm"],
                               max_abs_diff=diff, ok=ok)
                if ok:
                    break
            rows.append(row)
    return rows, d2n_time, medseg_time


def series_folders(root: Path) -> list[Path]:
    folders = set()
    for dirpath, _, files in os.walk(root):
        if any(not f.startswith(".") and f not in ("LICENSE",) and not f.endswith(".md") for f in files):
            folders.add(Path(dirpath))
    return sorted(folders)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path,
                        default=data_root() / "dicom")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    all_rows = []
    print(f"{'folder':52s} {'dcm2niix output':48s} {'world err mm':>12s} {'max |dv|':>10s} "
          f"{'range':>9s}  ok   t_d2n  t_medseg")
    for folder in series_folders(args.root):
        rows, t_d2n, t_ms = compare_folder(folder, args.root)
        for row in rows:
            err = "-" if row["world_error_mm"] is None else f"{row['world_error_mm']:.2e}"
            dv = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.3g}"
            print(f"{row['folder'][:52]:52s} {row['dcm2niix'][:48]:48s} {err:>12s} {dv:>10s} "
                  f"{row['value_range']:9.4g}  {'yes' if row['ok'] else 'NO ':3s} "
                  f"{t_d2n:6.3f} {t_ms:8.3f}")
        all_rows.extend(rows)
    n_ok = sum(r["ok"] for r in all_rows)
    print(f"\n{n_ok}/{len(all_rows)} dcm2niix outputs matched by medseg "
          f"(world coordinates within {WORLD_TOLERANCE_MM} mm, equal values)")
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=2))
    return 0 if all_rows and n_ok == len(all_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
