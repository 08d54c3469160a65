"""Load-time benchmark: medseg vs dcm2niix on the same DICOM, in the same run.

Cases:
- a 170-file classic series (one file per slice), written from a real FreeSurfer T1 (1 mm,
  170 sagittal slices of 256x256) with medseg's derived-series writer;
- the real Siemens XA30 enhanced multi-frame T1 (one file, 96 frames), when shared data is present.

medseg times: the header scan (no pixel data read) and the decoding into Volumes, apart; dcm2niix
time = its whole conversion to an uncompressed NIfTI. Median of N repeats.

Usage: python pipelines/benchmark_io.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from compare_dcm2niix import dcm2niix_binary  # same folder (scripts run from pipelines/)

from medseg.examples import data_root
from medseg.io import read_nifti, scan, write_dicom_series
from medseg.volume import Volume

DATA = data_root()


def time_medseg(folder: Path, repeats: int) -> tuple[float, float]:
    """Median (scan, load) seconds: the header scan (no pixel data) and the decoding into Volumes."""
    scans, loads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        refs = scan(folder).series
        middle = time.perf_counter()
        for ref in refs:
            ref.load()
        scans.append(middle - start)
        loads.append(time.perf_counter() - middle)
    return statistics.median(scans), statistics.median(loads)


def time_dcm2niix(folder: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([dcm2niix_binary(), "-z", "n", "-b", "n", "-o", out, str(folder)],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def classic_170(folder: Path) -> Path:
    source = DATA / "brain" / "fs-training" / "sub-01" / "T1.mgz"
    if source.exists():
        t1 = read_nifti(source).reorient("PIL")  # sagittal slices along the last axis
        array = np.asarray(t1.array)[:, :, 43:213]
        affine = t1.affine.copy()
        affine[:3, 3] = t1.world_coordinates([[0, 0, 43]])[0]
        volume = Volume(array.astype(np.int16), affine, t1.meta.replace(modality="MR"))
    else:  # no shared data: a random volume of the same size
        volume = Volume(np.random.default_rng(0).integers(0, 1000, (256, 256, 170)).astype(np.int16),
                        np.eye(4))
    write_dicom_series(volume, folder, series_description="bench 170", series_number=1)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("classic, 170 files (256x256)", classic_170(Path(tmp) / "classic"))]
        enhanced = DATA / "dicom" / "siemens-xa30-enhanced" / "5_anat-T1w_acq-tfl"
        if enhanced.exists():
            cases.append(("enhanced multi-frame, 1 file x 96 frames", enhanced))
        compressed = DATA / "dicom" / "transfer-syntaxes" / "In"
        if compressed.exists():
            cases.append(("9 files, 9 transfer syntaxes (384x384)", compressed))
        for name, folder in cases:
            scan_s, load_s = time_medseg(folder, args.repeats)
            theirs = time_dcm2niix(folder, args.repeats)
            rows.append((name, scan_s, load_s, theirs))
    print("ratios are medseg / dcm2niix's whole conversion of the same files")
    print(f"{'case':44s} {'scan s':>7s} {'load s':>7s} {'dcm2niix s':>11s} {'scan x':>7s} {'load x':>7s}")
    for name, scan_s, load_s, theirs in rows:
        print(f"{name:44s} {scan_s:7.3f} {load_s:7.3f} {theirs:11.3f} {scan_s / theirs:7.2f} {load_s / theirs:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
