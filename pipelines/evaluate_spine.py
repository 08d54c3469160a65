"""Evaluate whole-spine composing against ground truth cut from real long spine images.

For each source (PAM50 T2 template, C1..T12, ~550 mm; real lumbar T2 volumes), cut 3 overlapping
sagittal stations with different matrix sizes and spacings, per-station gain and coil-like bias,
noise and table-position errors of a few mm; write them as DICOM series; let medseg find the
composing set and stitch it (DICOM -> scan -> station detection -> compose); compare with the
source resampled onto the composite grid:

- PSNR and SSIM over the whole composite and within the overlaps;
- intensity consistency: per-station median(composite / truth) on anatomy (truth above 20 % of
  its 99.9th percentile) in the station's core (middle half, head-foot), max/min ratio. The truth
  of a station is the source sampled exactly as that station samples it (its own grid, no gain,
  bias, noise or table error), then resampled onto the composite grid like the station: stations
  differ in spacing, and a coarser station blurs thin bright structures (CSF, cord), which lowers
  a ratio taken against the source itself on bright voxels without any gain error (perfect
  stations of PAM50 give 1.000/0.942/0.984 that way). The ratio against the source is kept in
  the JSON as ``gain_consistency_vs_source``;
- residual misalignment of every station after registration: |found - true correction|, head-foot
  component and full 3D norm (target < 0.5 mm);
- the same without registration (intensity matching + blending only), which must leave the table
  errors in place;
- global NCC of the composite against the truth, beside the NCC that perfect stations reach (exact
  geometry, no gain, bias or noise, resampled and feathered onto the same grid: what the stations'
  own sampling allows) and the NCC against that perfect-station composite (what composing loses);
  all three over the voxels every station sampled from inside the source (farther from its edges
  than the table error plus a station spacing: nearer, a shifted station was sampled partly
  outside the source, an artefact of the simulation); the NCC including those edges is kept too;
- the gain ratio between regions (max/min of the
  per-station composite/truth ratios) and the spread (max - min) of the signed residual
  head-foot shifts: targets NCC >= 0.97, gain ratio <= 1.05, spread <= 1 mm;
- the case of a user report: three stations of a real lumbar T2 with gains 0.8/1.0/1.3 and a
  2 mm table error on the last station only (``lumbar_02_report``);
- composing time for 3 stations on CPU (SimpleITK) and through the torch backend.

Usage: python pipelines/evaluate_spine.py [--quick] [--cases NAME...] [--no-torch] [--intensity MODE]
       [--seed-offset N] [--stations N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io
from pydicom.uid import generate_uid
from skimage.metrics import structural_similarity

from medseg.examples import data_root
from medseg.io import read_nifti, scan, write_dicom_series
from medseg.resample import resample_to_grid
from medseg.spine import StitchOptions, compose, find_station_sets
from medseg.spine.blend import feather
from medseg.spine.compose import head_foot_axis
from medseg.spine.grid import coverage_and_ramp, resample_station
from medseg.synth.stations import StationSpec, make_stations
from medseg.volume import Volume, VolumeMeta, corner_indices

DATA = data_root()


def pam50() -> Volume:
    return read_nifti(DATA / "spine" / "sct-testing" / "template" / "template" / "PAM50_small_t2.nii.gz")


def lumbar(name: str) -> Volume:
    """A lumbar .mat volume: I[row S->I, col A->P, slice]; spacing is not stored: 1 mm assumed."""
    image = scipy.io.loadmat(DATA / "spine" / "lumbar-t2-vb1" / f"{name}.mat")["I"].astype(np.float32)
    # Volume 10's last slice is a constant fill (255 everywhere), not anatomy: edge slices without
    # any contrast are dropped.
    while image.shape[2] > 1 and np.ptp(image[:, :, -1]) == 0:
        image = image[:, :, :-1]
    while image.shape[2] > 1 and np.ptp(image[:, :, 0]) == 0:
        image = image[:, :, 1:]
    array = np.transpose(image, (1, 0, 2))  # (A->P, S->I, slices)
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([[0, 1, 0], [0, 0, -1], [1, 0, 0]]).astype(np.float64)
    affine[:3, 3] = [-array.shape[2] / 2, -array.shape[0] / 2, array.shape[1] / 2]
    return Volume(array, affine, VolumeMeta(modality="MR", description=f"lumbar {name}"))


def report_specs(source: Volume) -> list[StationSpec]:
    """Gains 0.8/1.0/1.3, exact geometry but a 2 mm head-foot table error on the last station."""
    specs = station_specs(source, np.random.default_rng(0))
    return [StationSpec(s.superior_mm, s.inferior_mm, s.in_plane_mm, s.slice_mm, gain=g, bias=0.2,
                        table_error_mm=e, noise=0.01)
            for s, g, e in zip(specs, (0.8, 1.0, 1.3), ((0, 0, 0), (0, 0, 0), (0, 0, 2.0)))]


def station_specs(source: Volume, rng: np.random.Generator, n: int = 3) -> list[StationSpec]:
    corners = source.world_coordinates(np.array([[0, 0, 0], np.array(source.spatial_shape) - 1]))
    top, bottom = corners[:, 2].max(), corners[:, 2].min()
    length = top - bottom
    overlap = 0.15 * length
    size = (length + (n - 1) * overlap) / n
    specs = []
    spacings = [(0.9, 2.0), (1.1, 2.2), (1.0, 1.8), (0.8, 2.4)]
    for i in range(n):
        hi = top - i * (size - overlap)
        error = (0, 0, 0) if i == 0 else tuple(rng.uniform(-1, 1, 3) * np.array([1.0, 1.5, 4.0]))
        specs.append(StationSpec(hi, max(hi - size, bottom), *spacings[i % len(spacings)],
                                 gain=float(rng.uniform(0.6, 1.7)) if i else 1.0,
                                 bias=float(rng.uniform(0.1, 0.3)), table_error_mm=error,
                                 noise=0.01))
    return specs


def _interior(composite: Volume, source: Volume, specs: list[StationSpec]) -> np.ndarray:
    """Composite voxels whose every station took its content from inside the source: farther
    from the source's edges, along each patient axis, than the largest table error along it
    plus the station's coarsest spacing. Nearer the edges a shifted station was sampled partly
    outside the source (zeros, or values interpolated with zeros), which no real station would
    be, and the composite there is the simulation's artefact, not the composing's."""
    corners = source.world_coordinates(corner_indices(source.spatial_shape))
    spacing = max(max(s.slice_mm, s.in_plane_mm) for s in specs)
    keep = np.ones(composite.spatial_shape, bool)
    i, j, k = (np.arange(n, dtype=np.float64) for n in composite.spatial_shape)
    for axis in range(3):
        margin = max(abs(s.table_error_mm[axis]) for s in specs) + spacing
        lo, hi = corners[:, axis].min() + margin, corners[:, axis].max() - margin
        a = composite.affine[axis]
        x = a[0] * i[:, None, None] + a[1] * j[None, :, None] + a[2] * k[None, None, :] + a[3]
        keep &= (x >= lo) & (x <= hi)
    return keep


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range ** 2 / mse)


def evaluate_case(name: str, source: Volume, seed: int, tmp: Path, *, specs=None, torch_check=True, n_stations: int = 3,
                  intensity: str = "gain") -> dict:
    rng = np.random.default_rng(seed)
    specs = specs if specs is not None else station_specs(source, rng, n_stations)
    truth = make_stations(source, specs)
    # each station's anatomy as it samples it: own grid, no gain, bias, noise or table error
    clean = make_stations(source, [StationSpec(s.superior_mm, s.inferior_mm, s.in_plane_mm, s.slice_mm)
                                   for s in specs]).stations
    # Through DICOM, as a user's stations arrive: shuffled series numbers, found by medseg.
    folder = tmp / name
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid()}
    numbers = (7, 3, 5, 9, 4, 8)  # shuffled: detection must order the stations by geometry
    assert len(truth.stations) <= len(numbers)
    for number, station in zip(numbers, truth.stations):
        station = station.with_array(station.array, dicom=study)
        write_dicom_series(station, folder / f"s{number}", series_description=f"T2_TSE_SAG_{number}",
                           series_number=number)
    refs = scan(folder).series
    sets = find_station_sets(refs)
    assert len(sets) == 1 and len(sets[0]) == len(truth.stations), "station detection failed"
    stations = [r.load() for r in sets[0]]

    rows = {}
    for label, options in (("registered", StitchOptions(backend="sitk", intensity=intensity)),
                           ("no registration", StitchOptions(register=False, backend="sitk",
                                                             intensity=intensity))):
        start = time.perf_counter()
        result = compose(stations, options)
        seconds = time.perf_counter() - start
        composite = result.volume
        reference = resample_to_grid(source, composite.spatial_shape, composite.affine).array
        inside = resample_to_grid(source.with_array(np.ones(source.spatial_shape, np.float32)),
                                  composite.spatial_shape, composite.affine).array > 0.999
        data = np.asarray(composite.array)
        to_edges = inside.copy()
        inside &= _interior(composite, source, specs)
        data_range = float(np.percentile(reference[inside], 99.9))
        valid = inside & (data > 0) | inside
        ssim_map = structural_similarity(reference, data, data_range=data_range, full=True)[1]
        # overlaps: voxels covered by two stations (from the result's station extents)
        z = composite.world_coordinates(np.stack(np.meshgrid(
            [composite.shape[0] // 2], np.arange(composite.shape[1]), [composite.shape[2] // 2],
            indexing="ij"), -1).reshape(-1, 3))[:, 2]
        overlap_rows = np.zeros(composite.shape[1], bool)
        extents = [s.head_foot_extent_mm for s in result.stations]
        for (lo1, hi1), (lo2, hi2) in zip(extents, extents[1:]):
            overlap_rows |= (z >= max(lo1, lo2)) & (z <= min(hi1, hi2))
        overlap = valid & overlap_rows[None, :, None]
        # intensity consistency: composite/truth per station core (foreground only)
        # the ceiling: perfect stations (exact geometry, no gain, bias or noise) resampled and
        # feathered onto the same grid; NCC against the source cannot exceed what they reach
        matched_images, matched_weights = [], []
        for station in clean:
            station_inside, ramp = coverage_and_ramp(station, composite.spatial_shape, composite.affine,
                                                     head_foot_axis(station))
            matched_images.append(np.where(station_inside, resample_station(
                station, composite.spatial_shape, composite.affine), 0).astype(np.float32))
            matched_weights.append(ramp.astype(np.float32))
        perfect = feather(matched_images, matched_weights)[0]
        ratios, ratios_vs_source = [], []
        for (lo, hi), station in zip(extents, clean):  # both head -> foot
            core_rows = (z > lo + 0.25 * (hi - lo)) & (z < hi - 0.25 * (hi - lo))
            mask = valid & core_rows[None, :, None] & (reference > 0.2 * data_range)
            ratios_vs_source.append(float(np.median(data[mask] / reference[mask])))
            matched = resample_station(station, composite.spatial_shape, composite.affine)
            station_inside = coverage_and_ramp(station, composite.spatial_shape, composite.affine,
                                               head_foot_axis(station))[0]
            mask = (valid & station_inside & core_rows[None, :, None]
                    & (matched > 0.2 * data_range))
            ratios.append(float(np.median(data[mask] / matched[mask])))
        found = [np.asarray(s.correction_mm) for s in result.stations]
        residual = [f - e for f, e in zip(found, truth.expected_correction_mm)]
        # the stations as loaded are in head->foot order, as are the specs
        covered = valid & (data > 0)
        covered_to_edges = to_edges & (data > 0)
        signed_hf = [float(r[2]) for r in residual]
        rows[label] = {
            "global_ncc": float(np.corrcoef(data[covered], reference[covered])[0, 1]),
            "global_ncc_to_the_edges": float(np.corrcoef(data[covered_to_edges], reference[covered_to_edges])[0, 1]),
            "global_ncc_perfect_stations": float(np.corrcoef(perfect[covered], reference[covered])[0, 1]),
            "global_ncc_vs_perfect_stations": float(np.corrcoef(data[covered], perfect[covered])[0, 1]),
            "residual_head_foot_spread_mm": max(signed_hf) - min(signed_hf),
            "registration": [s.registration for s in result.stations],
            "dropped_axes": [s.dropped_axes for s in result.stations],
            "psnr_db": psnr(reference[valid], data[valid], data_range),
            "ssim": float(ssim_map[valid].mean()),
            "psnr_overlap_db": psnr(reference[overlap], data[overlap], data_range),
            "ssim_overlap": float(ssim_map[overlap].mean()),
            "station_gain_ratios": ratios,
            "gain_consistency": max(ratios) / min(ratios),
            "station_gain_ratios_vs_source": ratios_vs_source,
            "gain_consistency_vs_source": max(ratios_vs_source) / min(ratios_vs_source),
            "intensity": result.intensity,
            "overlap_intensity_mismatch": [o["intensity_mismatch"] for o in result.overlaps],
            "residual_head_foot_mm": [abs(float(r[2])) for r in residual],
            "residual_head_foot_signed_mm": signed_hf,
            "residual_3d_mm": [float(np.linalg.norm(r)) for r in residual],
            "table_error_mm": [list(np.round(e, 3)) for e in truth.expected_correction_mm],
            "seconds": seconds,
        }
    if not torch_check:
        return rows
    start = time.perf_counter()
    torch_result = compose(stations, StitchOptions(backend="torch", device="cpu"))
    torch_seconds = time.perf_counter() - start
    sitk_volume = compose(stations, StitchOptions(backend="sitk")).volume
    rows["torch_vs_sitk_max_abs_diff"] = float(np.max(np.abs(
        np.asarray(torch_result.volume.array) - np.asarray(sitk_volume.array))))
    rows["torch_cpu_seconds"] = torch_seconds
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="PAM50 and one lumbar volume only")
    parser.add_argument("--cases", nargs="+", help="only these cases (e.g. pam50_t2 lumbar_02_report)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch-backend comparison")
    parser.add_argument("--intensity", default="gain", choices=["gain", "constant", "linear", "none"],
                        help="intensity matching (StitchOptions.intensity; 'constant' = one gain per station)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="draw other stations (cuts, gains, biases, table errors) from the same sources: "
                             "a check on draws no choice was made on")
    parser.add_argument("--stations", type=int, default=3, choices=[2, 3, 4, 5, 6],
                        help="stations cut from each source (the report case keeps its 3)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases = [("pam50_t2", pam50, 1, None), ("lumbar_02_report", lambda: lumbar("02"), 0, report_specs)]
    lumbar_names = ["02", "03"] if args.quick else ["02", "03", "06", "07", "08", "10"]
    cases += [(f"lumbar_{n}", (lambda n=n: lumbar(n)), 10 + i, None) for i, n in enumerate(lumbar_names)]
    if args.cases:
        cases = [c for c in cases if c[0] in args.cases]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, load, seed, make_specs in cases:
            source = load()
            results[name] = evaluate_case(name, source, seed + args.seed_offset, Path(tmp),
                                          specs=make_specs(source) if make_specs else None,
                                          torch_check=not args.no_torch, intensity=args.intensity,
                                          n_stations=args.stations)
    header = (f"{'case':16s} {'mode':16s} {'NCC':>6s} {'PSNR dB':>8s} {'SSIM':>6s} {'PSNRov':>7s} "
              f"{'gain max/min':>12s} {'resid HF mm (signed, per station)':>34s} {'HF spread':>9s} "
              f"{'resid 3D max':>12s} {'time s':>7s}")
    print(header)
    worst, worst_ncc, worst_gain, worst_spread = 0.0, 1.0, 1.0, 0.0
    for name, rows in results.items():
        for mode in ("registered", "no registration"):
            r = rows[mode]
            hf = " ".join(f"{v:+.3f}" for v in r["residual_head_foot_signed_mm"])
            print(f"{name:16s} {mode:16s} {r['global_ncc']:6.4f} {r['psnr_db']:8.2f} {r['ssim']:6.3f} "
                  f"{r['psnr_overlap_db']:7.2f} {r['gain_consistency']:12.4f} {hf:>34s} "
                  f"{r['residual_head_foot_spread_mm']:9.3f} {max(r['residual_3d_mm']):12.3f} {r['seconds']:7.2f}")
        r = rows["registered"]
        print(f"{'':16s} registration: {'; '.join(r['registration'])}")
        for index, notes in enumerate(r["dropped_axes"]):
            if notes:
                print(f"{'':16s} station index {index}: {'; '.join(notes)}")
        mismatch = "; ".join(f"{m['as_acquired']}/{m['constant_gains']}/{m['applied']}"
                             for m in r["overlap_intensity_mismatch"])
        print(f"{'':16s} intensity: {r['intensity'].get('check', r['intensity']['applied'])}; "
              f"overlap mismatch % (as acquired/constant gains/applied): {mismatch}; "
              f"gain ratio vs source {r['gain_consistency_vs_source']:.4f}")
        print(f"{'':16s} global NCC: {r['global_ncc']:.4f} against the source, of which perfect stations "
              f"reach {r['global_ncc_perfect_stations']:.4f} (their sampling); "
              f"{r['global_ncc_vs_perfect_stations']:.4f} against the perfect stations' composite; "
              f"{r['global_ncc_to_the_edges']:.4f} including the source's edges")
        worst = max(worst, max(r["residual_head_foot_mm"]))
        worst_ncc, worst_gain = min(worst_ncc, r["global_ncc"]), max(worst_gain, r["gain_consistency"])
        worst_spread = max(worst_spread, r["residual_head_foot_spread_mm"])
        if "torch_cpu_seconds" in rows:
            print(f"{'':16s} torch backend (CPU): {rows['torch_cpu_seconds']:.2f} s, max |torch - sitk| "
                  f"= {rows['torch_vs_sitk_max_abs_diff']:.3g}")
    print(f"\nafter registration, worst over cases: head-foot residual {worst:.3f} mm (target < 0.5), "
          f"global NCC {worst_ncc:.4f} (target >= 0.97), gain ratio {worst_gain:.4f} (target <= 1.05), "
          f"residual head-foot spread {worst_spread:.3f} mm (target <= 1)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = worst < 0.5 and worst_ncc >= 0.97 and worst_gain <= 1.05 and worst_spread <= 1.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
