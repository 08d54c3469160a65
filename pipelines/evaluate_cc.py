"""Evaluate the shipped CC model (ONNX, as inference runs it) on held-out subjects.

1. Mid-sagittal plane: Dice and 95 % Hausdorff distance (mm) per held-out subject.
2. Robustness: Dice vs in-plane head tilt (0..30 deg) and vs slab thickness (1..6 mm); PNG plots.
3. End to end on simulated localizers: a 5-slice sagittal series (5 mm slabs, 5 mm apart, head
   tilted, midline between slices) is cut from each held-out head and written as a Volume; the
   segmenter picks the slice itself; Dice against the label on that slice's plane.
4. Positioning: rotating the mid-sagittal image by theta (-30..30 deg) must change the final
   angle by theta: the error per theta (table + PNG). The rotated image runs through the whole
   segmenter (one-slice series) as a scan would.
4b. The same head in different positions: localizers of the head pitched -30..30 deg in the
   scanner; the final angle must follow the head (error against the known motion).
5. Latency per slice: onnxruntime vs torch eager on the same model (CPU), same run.

``evaluation.json`` holds every figure and, under ``validation``, the block that
``pipelines/export.py`` writes into the contract.

Usage: python pipelines/evaluate_cc.py [--model-dir models] [--checkpoint runs/.../best.pt] [--out eval_out]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from medseg.examples import data_root
from medseg.infer.runtime import load_runtime
from medseg.positioning.angles import NoCorpusCallosumError, localize
from medseg.positioning.pipeline import OUTLINE_SMOOTHING_MM
from medseg.segment.data import PlanePose, Subject
from medseg.segment.evaluate import dice, hd95, predict_masks
from medseg.segment.infer import CCSegmenter, NoCCFoundError

DATA = data_root()


def plot(path: Path, xs, series: dict[str, list[float]], xlabel: str, ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def validation_block(report: dict, subjects: list[str]) -> dict:
    """The contract's ``validation`` block from this evaluation's figures (what
    ``pipelines/export.py`` copies into ``model.json``)."""
    block = {
        "held_out_subjects": list(subjects),
        "midsagittal": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                        for row in report["midsagittal"]],
        "dice_vs_tilt": report["dice_vs_tilt"],
        "dice_vs_slab": report["dice_vs_slab"],
        "simulated_localizers_dice": [round(r["dice"], 4) for r in report["simulated_localizers"] if "dice" in r],
    }
    if "dice" in report.get("mni152", {}):
        block["mni152_2mm_template_dice"] = round(report["mni152"]["dice"], 4)
    block["evaluated_by"] = "pipelines/evaluate_cc.py"
    return block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None, help="for the torch latency comparison")
    parser.add_argument("--subjects", nargs="+", default=["sub-08", "sub-09"])
    parser.add_argument("--out", type=Path, default=Path("eval_out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runtime = load_runtime(models_dir=args.model_dir)
    size = runtime.contract.input.size
    spacing = float(runtime.contract.input.spacing_mm)
    subjects = [Subject.load(DATA / "brain" / "fs-training" / s) for s in args.subjects]
    report: dict = {"model": runtime.contract.name, "sha256": runtime.contract.sha256,
                    "providers": runtime.providers}

    # 1. mid-sagittal plane
    rows = []
    for subject in subjects:
        image, label = subject.sample(PlanePose(), size, spacing)
        pred = predict_masks(runtime, [image])[0]
        rows.append({"subject": subject.name, "dice": dice(pred, label), "hd95_mm": hd95(pred, label, spacing),
                     "label_area_mm2": float(label.sum() * spacing ** 2)})
    report["midsagittal"] = rows
    print("Mid-sagittal plane (held-out subjects):")
    for r in rows:
        print(f"  {r['subject']}: Dice {r['dice']:.4f}  HD95 {r['hd95_mm']:.2f} mm  "
              f"(label {r['label_area_mm2']:.0f} mm2)")

    # 2. robustness curves
    tilts = [0, 5, 10, 15, 20, 25, 30]
    slabs = [1, 2, 3, 4, 5, 6]
    tilt_curve = {s.name: [] for s in subjects}
    slab_curve = {s.name: [] for s in subjects}
    for subject in subjects:
        for t in tilts:
            scores = []
            for sign in (1, -1):
                image, label = subject.sample(PlanePose(rotation_deg=sign * t), size, spacing)
                scores.append(dice(predict_masks(runtime, [image])[0], label))
            tilt_curve[subject.name].append(float(np.mean(scores)))
        for s in slabs:
            image, label = subject.sample(PlanePose(slab_mm=s), size, spacing)
            slab_curve[subject.name].append(dice(predict_masks(runtime, [image])[0], label))
    report["dice_vs_tilt"] = {"tilt_deg": tilts, **tilt_curve}
    report["dice_vs_slab"] = {"slab_mm": slabs, **slab_curve}
    plot(args.out / "dice_vs_tilt.png", tilts, tilt_curve, "in-plane head tilt (deg, both signs)", "Dice",
         "CC Dice vs head tilt")
    plot(args.out / "dice_vs_slab.png", slabs, slab_curve, "slab thickness (mm)", "Dice", "CC Dice vs slab thickness")
    print("Dice vs tilt:", {k: [round(v, 3) for v in vals] for k, vals in tilt_curve.items()})
    print("Dice vs slab:", {k: [round(v, 3) for v in vals] for k, vals in slab_curve.items()})

    # 3. end-to-end simulated localizers
    segmenter = CCSegmenter(runtime)
    e2e = []
    for subject in subjects:
        for tilt, shift in ((0, 0.0), (15, 2.5), (-25, -1.5), (30, 1.0)):
            volume, labels = subject.sample_localizer(rotation_deg=tilt, midline_offset_mm=shift)
            try:
                seg = segmenter.segment(volume, localizer=True)
                k = seg.slice_index
                expected = int(np.argmin([abs((i - 2) * 5.0 + shift) for i in range(5)]))
                e2e.append({"subject": subject.name, "tilt": tilt, "midline_offset_mm": shift, "chosen": k,
                            "closest_to_midline": expected, "dice": dice(seg.mask2d, labels[k])})
            except Exception as exc:  # recorded, the evaluation goes on
                e2e.append({"subject": subject.name, "tilt": tilt, "error": f"{type(exc).__name__}: {exc}"})
    report["simulated_localizers"] = e2e
    print("Simulated localizers (5 x 5 mm):")
    for r in e2e:
        print("  ", r)

    # 3b. an unseen image and label: FSL MNI152 T1 (2 mm, skull on) through the full 3D path
    #     (symmetry plane + CC offset), Dice against the published 1 mm mid-sagittal CC mask.
    mni = DATA / "brain" / "mni152-cc"
    if (mni / "MNI152_T1_2mm_centered.nii.gz").exists():
        from scipy import ndimage as ndi

        from medseg.io import read_nifti

        t1 = read_nifti(mni / "MNI152_T1_2mm_centered.nii.gz")
        cc = read_nifti(mni / "MNI152_T1_1mm_centered_cc_mask.nii.gz")
        try:
            seg = segmenter.segment(t1, localizer=False)
            x = int(np.argmax(np.asarray(cc.array).sum(axis=(1, 2))))
            truth = np.asarray(cc.array)[x] > 0
            jj, kk = np.meshgrid(np.arange(cc.shape[1]), np.arange(cc.shape[2]), indexing="ij")
            world = cc.world_coordinates(np.column_stack([np.full(jj.size, x), jj.ravel(), kk.ravel()]))
            rel = world - seg.plane.origin
            cols = rel @ seg.plane.x_vec / np.dot(seg.plane.x_vec, seg.plane.x_vec)
            rows = rel @ seg.plane.y_vec / np.dot(seg.plane.y_vec, seg.plane.y_vec)
            pred = ndi.map_coordinates(seg.probability2d, np.vstack([rows, cols]), order=1).reshape(jj.shape) \
                > runtime.contract.output.threshold
            report["mni152"] = {"dice": dice(pred, truth), "area_mm2": seg.area_mm2,
                                "plane_normal": [float(v) for v in seg.midsagittal_normal],
                                "plane_point_mm": [float(v) for v in seg.midsagittal_point]}
        except Exception as exc:
            report["mni152"] = {"error": f"{type(exc).__name__}: {exc}"}
        print("MNI152 T1 2 mm (unseen, 3D path):", report["mni152"])

    # 4. positioning: angle follows a rotation of the image. The rotated plane goes through the
    # whole segmenter (as a one-slice sagittal series on the same grid): plane choice, canonical
    # second pass, mapping back, then the positioning angles.
    from medseg.volume import Volume

    segmenter = CCSegmenter(runtime)
    angle_rows = []
    for subject in subjects:
        plane = subject.plane(PlanePose(), size, spacing)
        image, _ = subject.sample(PlanePose(), size, spacing)
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1] = plane.x_vec, plane.y_vec
        affine[:3, 2] = np.cross(plane.x_vec, plane.y_vec) / spacing ** 2 * 5.0
        affine[:3, 3] = plane.origin

        def final_angle(picture, affine=affine):  # as the positioning pipeline does it
            seg = segmenter.segment(Volume(picture.T[:, :, None].copy(), affine), localizer=True)
            return localize(seg.mask2d, seg.plane, probability=seg.probability2d,
                            smoothing_mm=OUTLINE_SMOOTHING_MM, threshold=segmenter.threshold).final.angle_deg

        base = final_angle(image)
        centre = ((size - 1) / 2, (size - 1) / 2)
        for theta in range(-30, 31, 5):
            rotated = cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, theta, 1.0), (size, size),
                                     flags=cv2.INTER_LINEAR)
            try:
                angle = final_angle(rotated)
                error = (angle - base) - (-theta)
            except (NoCorpusCallosumError, NoCCFoundError):
                error = float("nan")
            angle_rows.append({"subject": subject.name, "theta": theta, "error_deg": float(error)})
    report["angle_vs_rotation"] = angle_rows
    thetas = list(range(-30, 31, 5))
    plot(args.out / "angle_error_vs_rotation.png", thetas,
         {s.name: [r["error_deg"] for r in angle_rows if r["subject"] == s.name] for s in subjects},
         "image rotation theta (deg)", "final angle error (deg)", "Angle change minus theta")
    errors = np.array([r["error_deg"] for r in angle_rows])
    print(f"Angle error vs rotation: max |error| {np.nanmax(np.abs(errors)):.2f} deg, "
          f"mean |error| {np.nanmean(np.abs(errors)):.2f} deg over {len(errors)} cases, "
          f"{int(np.sum(np.abs(errors) <= 1.0))} within 1 deg")
    for subject in subjects:
        print(f"  {subject.name}: " + " ".join(f"{r['theta']:+d}:{r['error_deg']:+.2f}" for r in angle_rows
                                             if r["subject"] == subject.name))

    # 4b. the same head in different positions: 5 x 5 mm localizers cut from the 3D image with the
    # sampling axes turned by phi, then labelled with the unturned axes (the scanner's): the head
    # appears pitched in the scanner. M = A_0 A_phi^-1 moves the head from pose 0 to pose phi, so
    # the expected final direction is M d_0 (d_0: the final direction found at phi = 0).
    from medseg.geometry import physical_angle

    pitches = list(range(-30, 31, 10))
    position_rows = []
    for subject in subjects:
        reference, _ = subject.sample_localizer(rotation_deg=0.0, midline_offset_mm=1.0)
        found = {}
        for phi in pitches:
            sampled, _ = subject.sample_localizer(rotation_deg=phi, midline_offset_mm=1.0)
            moved = Volume(sampled.array, reference.affine, sampled.meta)
            motion = reference.affine[:3, :3] @ np.linalg.inv(sampled.affine[:3, :3])
            try:
                seg = segmenter.segment(moved, localizer=True)
                final = localize(seg.mask2d, seg.plane, probability=seg.probability2d,
                                 smoothing_mm=OUTLINE_SMOOTHING_MM, threshold=segmenter.threshold).final
                found[phi] = (final.angle_deg, np.array(final.direction_lps), motion)
            except (NoCorpusCallosumError, NoCCFoundError):
                found[phi] = (float("nan"), None, motion)
        d0 = found[0][1]
        for phi in pitches:
            angle, _, motion = found[phi]
            expected = physical_angle(motion @ d0) if d0 is not None else float("nan")
            position_rows.append({"subject": subject.name, "pitch": phi, "final_deg": angle,
                                  "expected_deg": expected, "error_deg": float(angle - expected)})
    report["angle_vs_head_position"] = position_rows
    errors = np.array([r["error_deg"] for r in position_rows])
    print("Head positions (localizers, head pitched -30..30 in the scanner):")
    for subject in subjects:
        print(f"  {subject.name}: " + " ".join(
            f"{r['pitch']:+d}:{r['final_deg']:+.2f}({r['error_deg']:+.2f})"
            for r in position_rows if r["subject"] == subject.name))
    print(f"  max |error| {np.nanmax(np.abs(errors)):.2f} deg, mean {np.nanmean(np.abs(errors)):.2f} deg, "
          f"{int(np.sum(np.abs(errors) <= 1.0))}/{len(errors)} within 1 deg")

    # 5. latency per slice, onnxruntime vs torch eager
    batch = np.random.default_rng(0).normal(size=(1, 1, size, size)).astype(np.float32)
    runtime.run(batch)
    t = time.perf_counter()
    for _ in range(20):
        runtime.run(batch)
    ort_ms = (time.perf_counter() - t) / 20 * 1000
    report["latency_ms_per_slice"] = {"onnxruntime_cpu": ort_ms}
    if args.checkpoint:
        from medseg.config import from_dict
        from medseg.segment.nets import build_model
        from medseg.segment.train import TrainingConfig

        data = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        cfg = from_dict(TrainingConfig, data["config"])
        model = build_model(cfg.model, size)
        model.load_state_dict(data["model"])
        model.eval()
        x = torch.from_numpy(batch)
        with torch.no_grad():
            model(x)
            t = time.perf_counter()
            for _ in range(20):
                model(x)
        torch_ms = (time.perf_counter() - t) / 20 * 1000
        report["latency_ms_per_slice"]["torch_eager_cpu"] = torch_ms
        report["latency_ms_per_slice"]["speedup_ort_over_torch"] = torch_ms / ort_ms
    print("Latency per slice:", {k: round(v, 2) for k, v in report["latency_ms_per_slice"].items()})
    report["validation"] = validation_block(report, args.subjects)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'evaluation.json'} and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
