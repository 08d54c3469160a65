"""CC accuracy per kind of data, through the whole positioning (N4, CC search, angles), as a scan runs.

For each held-out FreeSurfer subject (never used for training or to choose a checkpoint):
- 3D T1 whole head (FreeSurfer's T1.mgz), the same with a raw-scanner look (smooth bias field,
  gamma, Rician noise), skull-stripped (times brainmask.mgz), and a thick-slice localizer
  (5 slices of 5 mm slabs cut from the 3D T1);
- the mask is projected left-right onto the subject's own voxel grid and compared with the
  left-right projection of FreeSurfer's CC label (251-255) and of the same label cleaned to the
  CC alone (the training target: no fornix, septum or ventricle CSF; medseg/segment/data.py).
Templates: FSL's MNI152 2 mm T1 (whole head) against its mid-sagittal CC mask; the mean
mid-sagittal image of many heads (0.5 mm, CCSegThickness) against its CC probability map > 0.5,
with the share of its fornix map (> 0.1: 184 mm2, reaching within 2.5 mm of the CC) inside
the mask; nilearn's ICBM152 2009a (brain only; no CC label: area and plausibility only). Real
scanner T1 without labels: Siemens XA30 (area and plausibility only).

Each row: area (mm2) of the mask and of the references, Dice of the projections, mean thickness,
the plausibility gate's findings and the final angle. QC pictures go to OUT/<case>.png.

Usage: python pipelines/evaluate_cc_kinds.py [--subjects sub-08 sub-09] [--out eval_out/cc_kinds]
       [--model-dir DIR] [--no-cc-alone]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from medseg.examples import data_root, icbm152_head
from medseg.io import read_nifti, scan
from medseg.io.png import write_png
from medseg.positioning.pipeline import position_volume
from medseg.positioning.qc import render_qc
from medseg.segment.data import CC_LABELS, Subject
from medseg.segment.infer import CCSegmenter
from medseg.volume import Volume

DATA = data_root()


def lr_axis(affine: np.ndarray) -> int:
    return int(np.argmax(np.abs(affine[0, :3])))


def project_mask(result, reference: Volume) -> np.ndarray:
    """The mask (on its plane) projected left-right onto ``reference``'s sagittal voxel grid:
    each voxel row along left-right meets the plane once; the mask is looked up there."""
    seg = result.segmentation
    plane, mask = seg.plane, seg.mask2d
    axis = lr_axis(reference.affine)
    others = [i for i in range(3) if i != axis]
    shape = [reference.spatial_shape[i] for i in others]
    idx = np.zeros((shape[0] * shape[1], 3))
    grid = np.indices(shape).reshape(2, -1).T
    idx[:, others[0]], idx[:, others[1]] = grid[:, 0], grid[:, 1]
    a = reference.affine
    p0 = idx @ a[:3, :3].T + a[:3, 3]
    normal = np.cross(plane.x_vec, plane.y_vec)
    t = ((plane.origin - p0) @ normal) / float(a[:3, axis] @ normal)
    points = p0 + t[:, None] * a[:3, axis]
    basis = np.column_stack([plane.x_vec, plane.y_vec])
    uv, *_ = np.linalg.lstsq(basis, (points - plane.origin).T, rcond=None)
    u, v = np.rint(uv[0]).astype(int), np.rint(uv[1]).astype(int)
    inside = (u >= 0) & (u < mask.shape[1]) & (v >= 0) & (v < mask.shape[0])
    out = np.zeros(len(points), bool)
    out[inside] = mask[v[inside], u[inside]]
    return out.reshape(shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def raw_look(volume: Volume, seed: int = 0) -> Volume:
    """A raw-scanner look: smooth multiplicative bias (x0.67..x1.5 across the head), gamma 1.2,
    Rician noise at 3 % of white matter; intensities in scanner-like units."""
    rng = np.random.default_rng(seed)
    image = np.asarray(volume.array, dtype=np.float32)
    shape = image.shape
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    field = np.exp(0.4 * x - 0.3 * y + 0.25 * z * x)
    out = (np.clip(image, 0, None) / 110.0) ** 1.2 * field
    sigma = 0.03
    out = np.hypot(out + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
    return volume.with_array((out * 800).astype(np.float32))


def row_for(name: str, kind: str, result, references: dict[str, tuple[Volume, np.ndarray]]) -> dict:
    m = result.measurements
    row = {"case": name, "kind": kind, "area_mm2": round(m.area_mm2, 1),
           "mean_thickness_mm": round(m.mean_thickness_mm, 2), "implausible": m.implausible,
           "final_angle_deg": round(result.localization.final.angle_deg, 2),
           "symmetry_offset_mm": (None if result.segmentation.symmetry_offset_mm is None
                                  else round(float(result.segmentation.symmetry_offset_mm), 2))}
    for key, (reference, label) in references.items():
        projection = label.any(axis=lr_axis(reference.affine))
        voxel_area = float(np.prod([np.linalg.norm(reference.affine[:3, i])
                                    for i in range(3) if i != lr_axis(reference.affine)]))
        ours = project_mask(result, reference)
        row[f"{key}_area_mm2"] = round(float(projection.sum()) * voxel_area, 1)
        row[f"{key}_dice"] = round(dice(ours, projection), 3)
        row[f"{key}_area_ratio"] = round(m.area_mm2 / max(float(projection.sum()) * voxel_area, 1e-6), 3)
    return row


OPPOSITE = dict(zip("LRAPSI", "RLPAIS"))


def patient_position_layouts(volume: Volume) -> dict[str, Volume]:
    """The same localizer as four patient positions store it: the in-plane axes as they are
    (supine), both reversed (prone), swapped (decubitus) and swapped and reversed (other side)."""
    a, b, c = volume.orientation
    return {"supine": volume, "prone": volume.reorient(OPPOSITE[a] + OPPOSITE[b] + c),
            "decubitus_1": volume.reorient(b + a + c),
            "decubitus_2": volume.reorient(OPPOSITE[b] + OPPOSITE[a] + c)}


def qc(result, path: Path, title: str) -> None:
    seg = result.segmentation
    write_png(render_qc(seg.image2d, seg.mask2d, seg.plane, result.localization, title=title[:40]), path)


def run_case(segmenter, volume: Volume, name: str, kind: str, out: Path, references,
             fornix: tuple[Volume, np.ndarray] | None = None) -> dict:
    """One row; ``fornix`` (a reference grid and its fornix mask) adds the share of the fornix
    inside the mask (``fornix_in_mask``: 0 for the CC alone)."""
    try:
        result = position_volume(volume, segmenter)
    except Exception as error:  # a failed case is a row of the table, not a crash of the evaluation
        return {"case": name, "kind": kind, "error": f"{type(error).__name__}: {error}"}
    qc(result, out / f"{name}.png", name)
    row = row_for(name, kind, result, references)
    if fornix is not None:
        reference, label = fornix
        projection = label.any(axis=lr_axis(reference.affine))
        row["fornix_in_mask"] = round(float((project_mask(result, reference) & projection).sum())
                                      / max(float(projection.sum()), 1.0), 3)
        row["fornix_reference_px"] = int(projection.sum())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="+", default=["sub-08", "sub-09"])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("eval_out/cc_kinds"))
    parser.add_argument("--no-cc-alone", action="store_true",
                        help="the network's mask as it is (default: the rule-based CC-alone step only for a "
                             "network whose contract says it was trained on FreeSurfer's label as it is)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    from medseg.infer.runtime import load_runtime

    segmenter = CCSegmenter(load_runtime(models_dir=args.model_dir), cc_alone=False if args.no_cc_alone else None)
    rows, positions = [], []
    for name in args.subjects:
        folder = DATA / "brain" / "fs-training" / name
        t1, aseg = read_nifti(folder / "T1.mgz"), read_nifti(folder / "aseg.mgz")
        brain = np.asarray(read_nifti(folder / "brainmask.mgz").array) > 0
        subject = Subject.from_volumes(name, t1, aseg)
        references = {"freesurfer": (t1, np.isin(np.asarray(aseg.array), CC_LABELS)),
                      "cc_alone": (t1, subject.cc > 0)}
        image = np.asarray(t1.array, dtype=np.float32)
        localizer, _ = subject.sample_localizer(rotation_deg=0.0, midline_offset_mm=1.0)
        cases = {"3d_t1": t1.with_array(image), "3d_t1_raw_look": raw_look(t1),
                 "3d_t1_skull_stripped": t1.with_array(image * brain), "localizer_5x5mm": localizer}
        for kind, volume in cases.items():
            rows.append(run_case(segmenter, volume, f"{name}_{kind}", kind, args.out, references))
        angles = {}
        for position, volume in patient_position_layouts(localizer).items():
            try:
                angles[position] = position_volume(volume, segmenter).localization.final.angle_deg
            except Exception as error:
                angles[position] = f"{type(error).__name__}: {error}"
        numbers = [v for v in angles.values() if isinstance(v, float)]
        positions.append({"subject": name, "angles_deg": angles, "spread_deg": (
            round(max(numbers) - min(numbers), 3) if len(numbers) == len(angles) else None)})
    mni = DATA / "brain" / "mni152-cc"
    if mni.exists():
        reference = read_nifti(mni / "MNI152_T1_1mm_centered_cc_mask.nii.gz")
        rows.append(run_case(segmenter, read_nifti(mni / "MNI152_T1_2mm_centered.nii.gz"), "mni152_2mm",
                             "template", args.out, {"template_mask": (reference, np.asarray(reference.array) > 0)}))
    msp = mni / "all_msp_mean.nii.gz"
    if msp.exists():  # one 0.5 mm mid-sagittal image, the mean of many heads, with CC and fornix maps
        image = read_nifti(msp)
        cc = np.asarray(read_nifti(mni / "all_cc_prob.nii.gz").array) > 0.5
        # the fornix map above 0.1 (184 mm2) reaches within 2.5 mm of the CC map above 0.5, where a
        # mask that takes in the fornix under the body meets it; above 0.5 it lies 6.5 mm away
        fornix = np.asarray(read_nifti(mni / "all_fornix_prob.nii.gz").array) > 0.1
        rows.append(run_case(segmenter, image, "mean_midsagittal_0.5mm", "template (mean mid-sagittal image)",
                             args.out, {"cc_probability": (image, cc)}, fornix=(image, fornix)))
    icbm = icbm152_head()
    if icbm is not None:
        rows.append(run_case(segmenter, icbm, "icbm152_2009a", "template (brain only)", args.out, {}))
    xa30 = DATA / "dicom" / "siemens-xa30-enhanced"
    if xa30.exists():
        series = [s for s in scan(xa30).series if "T1" in (s.description or "").upper()]
        if series:
            rows.append(run_case(segmenter, series[0].load(), "siemens_xa30_t1", "real 3D T1 (no label)",
                                 args.out, {}))
    print(f"{'case':32s} {'area':>6s} {'FS':>6s} {'ratio':>6s} {'Dice':>6s} {'alone':>6s} {'ratio':>6s} "
          f"{'Dice':>6s} {'thick':>6s} {'angle':>7s}  gate")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:32s} {r['error']}")
            continue
        ref = next((k[:-5] for k in r if k.endswith("_dice")), None)
        fs = (r.get("freesurfer_area_mm2"), r.get("freesurfer_area_ratio"), r.get("freesurfer_dice"))
        alone = ((r.get("cc_alone_area_mm2"), r.get("cc_alone_area_ratio"), r.get("cc_alone_dice"))
                 if "cc_alone_dice" in r else
                 (r.get(f"{ref}_area_mm2"), r.get(f"{ref}_area_ratio"), r.get(f"{ref}_dice")) if ref else (None,) * 3)

        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"
        print(f"{r['case']:32s} {r['area_mm2']:6.0f} {f(fs[0], '6.0f')} {f(fs[1], '6.2f')} {f(fs[2], '6.3f')} "
              f"{f(alone[0], '6.0f')} {f(alone[1], '6.2f')} {f(alone[2], '6.3f')} {r['mean_thickness_mm']:6.1f} "
              f"{r['final_angle_deg']:+7.2f}  {'; '.join(r['implausible']) or 'plausible'}"
              + (f"; fornix in the mask {r['fornix_in_mask']:.1%}" if "fornix_in_mask" in r else ""))
    print("\nthe same localizer stored as four patient positions store it (final angle, deg):")
    for p in positions:
        print(f"  {p['subject']}: " + ", ".join(f"{k} {v:+.2f}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in p["angles_deg"].items())
              + f"; spread {p['spread_deg']} (target <= 2)")
    (args.out / "cc_kinds.json").write_text(json.dumps({"rows": rows, "patient_positions": positions}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
