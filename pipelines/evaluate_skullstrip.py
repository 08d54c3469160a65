"""Evaluate the shipped skull-stripping model (ONNX, as inference runs it).

1. 3D volumes: Dice and 95 % Hausdorff distance (mm) against ``brainmask.mgz`` for every
   held-out subject (never seen in training), and the run time per volume.
2. The same heads with a raw-scanner look (smooth bias field, gamma, brighter scalp, noise).
3. Simulated thick-slice localizers: 15 sagittal slabs of 5 mm, head pitched 0/+20/-25 deg,
   cut from the held-out heads; Dice over the stack against the brain mask of each slice.
4. An unseen template and mask definition: FSL MNI152 T1 2 mm (skull on) vs its brain mask.
5. A raw scanner T1 without ground truth (Siemens XA30): brain volume and a QC figure.
6. Bad input: noise, a constant image and a uniform cylinder (bottle phantom) must raise
   NoBrainFoundError; a real spine image (PAM50 T2 template) too, when the shared data is there.

``evaluation.json`` holds every figure and, under ``validation``, the block that
``pipelines/export.py`` (or ``--update-contract``) writes into the contract.

Usage: python pipelines/evaluate_skullstrip.py [--model-dir models] [--out eval_skullstrip]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from medseg.examples import data_root, freesurfer_subjects_root
from medseg.infer.runtime import load_runtime
from medseg.io import load_volume, read_nifti
from medseg.preprocess.skullstrip import MODEL_NAME, NoBrainFoundError, SkullStripper
from medseg.segment.evaluate import dice
from medseg.volume import Volume


def hd95_mm(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """95th-percentile symmetric surface distance (mm) between two 3D masks (scipy EDT)."""
    from scipy import ndimage

    def surface(m):
        return m & ~ndimage.binary_erosion(m)

    sa, sb = surface(a), surface(b)
    da = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(np.percentile(np.concatenate([da, db]), 95))


def raw_look(volume: Volume, rng: np.random.Generator) -> Volume:
    """A raw-scanner version of a FreeSurfer T1: bias field, gamma, bright scalp, Rician noise."""
    array = np.asarray(volume.array, np.float32) / 255.0
    shape = np.array(array.shape)
    grid = np.indices(array.shape, dtype=np.float32) / (shape[:, None, None, None] - 1) * 2 - 1
    log_field = 0.4 * grid[0] - 0.3 * grid[1] ** 2 + 0.25 * grid[1] * grid[2]
    out = np.clip(array, 0, None) ** 1.3 * np.exp(log_field)
    out = np.hypot(out + rng.normal(0, 0.02, out.shape), rng.normal(0, 0.02, out.shape))
    return volume.with_array((out * 1000).astype(np.float32))


def save_qc(path: Path, volume: Volume, mask: np.ndarray, title: str) -> None:
    """Sagittal, coronal and axial planes through the mask's centre (RAS display), mask outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = volume.reorient("RAS")
    outline = volume.with_array(mask.astype(np.uint8), is_label=True).reorient("RAS")
    array, labels = np.asarray(image.array, np.float32), np.asarray(outline.array) > 0
    centre = [int(v) for v in np.argwhere(labels).mean(axis=0)] if labels.any() else \
        [n // 2 for n in array.shape]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    for axis, ax in enumerate(axes):
        plane = np.take(array, centre[axis], axis=axis)
        ax.imshow(plane.T, cmap="gray", origin="lower", vmax=np.percentile(array, 99.5))
        ax.contour(np.take(labels, centre[axis], axis=axis).T.astype(float), [0.5], colors="r",
                   linewidths=0.8)
        ax.set_title(("sagittal", "coronal", "axial")[axis])
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def validation_block(report: dict, subjects: list[str]) -> dict:
    """The contract's ``validation`` block from this evaluation's figures (what
    ``pipelines/export.py`` and ``--update-contract`` write into ``model.json``)."""
    def rounded(row: dict) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}

    block = {"held_out_subjects": list(subjects), "volumes": [rounded(r) for r in report["volumes"]],
             "localizers_15x5mm": [rounded(r) for r in report["localizers"]]}
    if "dice" in report.get("mni152_2mm", {}):
        block["mni152_2mm_dice"] = round(report["mni152_2mm"]["dice"], 4)
    block["evaluated_by"] = "pipelines/evaluate_skullstrip.py"
    return block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--subjects", nargs="+", default=["sub-05", "sub-08", "sub-09"])
    parser.add_argument("--out", type=Path, default=Path("eval_skullstrip"))
    parser.add_argument("--update-contract", action="store_true",
                        help="write the summary into the model's contract (validation)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runtime = load_runtime(MODEL_NAME, models_dir=args.model_dir)
    stripper = SkullStripper(runtime)
    report: dict = {"model": runtime.contract.name, "sha256": runtime.contract.sha256,
                    "providers": runtime.providers}
    root = freesurfer_subjects_root()
    rng = np.random.default_rng(0)

    # 1 + 2. 3D volumes, as stored and with a raw-scanner look
    rows = []
    for name in args.subjects:
        t1 = read_nifti(root / name / "T1.mgz")
        truth = np.asarray(read_nifti(root / name / "brainmask.mgz").array) > 0
        for variant, volume in (("freesurfer", t1), ("raw look", raw_look(t1, rng))):
            start = time.perf_counter()
            result = stripper.extract(volume)
            seconds = time.perf_counter() - start
            mask = np.asarray(result.mask.array) > 0
            rows.append({"subject": name, "variant": variant, "dice": dice(mask, truth),
                         "hd95_mm": hd95_mm(mask, truth, volume.spacing), "seconds": seconds,
                         "volume_ml": result.volume_ml, "truth_ml": float(truth.sum()) / 1000})
            print(f"  {name} ({variant}): Dice {rows[-1]['dice']:.4f}  HD95 {rows[-1]['hd95_mm']:.2f} mm  "
                  f"{result.volume_ml:.0f} ml (truth {rows[-1]['truth_ml']:.0f})  {seconds:.1f} s")
            if variant == "freesurfer" and name == args.subjects[-1]:
                save_qc(args.out / f"skullstrip_{name}.png", volume, mask, f"{name}: brain mask (held out)")
    report["volumes"] = rows

    # 3. thick-slice localizers
    from medseg.segment.data import Subject

    localizers = []
    for name in args.subjects:
        if not (root / name / "aseg.mgz").exists():
            continue  # the localizer sampler needs the subject's mid-sagittal frame (from the CC)
        subject = Subject.load(root / name)
        for pitch in (0.0, 20.0, -25.0):
            volume, labels = subject.sample_localizer(rotation_deg=pitch, n_slices=15, gap_mm=5.0,
                                                      target="brain")
            truth = np.stack([label.T for label in labels], axis=-1)
            result = stripper.extract(volume)
            mask = np.asarray(result.mask.array) > 0
            localizers.append({"subject": name, "pitch_deg": pitch, "dice": dice(mask, truth)})
            print(f"  {name} localizer 15 x 5 mm, pitch {pitch:+.0f}: Dice {localizers[-1]['dice']:.4f}")
    report["localizers"] = localizers

    # 4. MNI152 (unseen template, FSL mask definition)
    mni = data_root() / "brain" / "mni152-cc"
    if (mni / "MNI152_T1_2mm_centered.nii.gz").exists():
        t1 = read_nifti(mni / "MNI152_T1_2mm_centered.nii.gz")
        masks = sorted(mni.glob("MNI152_T1_2mm*brain_mask*"))
        if masks:
            truth = np.asarray(read_nifti(masks[0]).array) > 0
            result = stripper.extract(t1)
            mask = np.asarray(result.mask.array) > 0
            report["mni152_2mm"] = {"dice": dice(mask, truth), "mask": masks[0].name}
            print(f"  MNI152 2 mm vs {masks[0].name}: Dice {report['mni152_2mm']['dice']:.4f}")

    # 5. raw scanner T1, no ground truth
    xa30 = data_root() / "dicom" / "siemens-xa30-enhanced" / "5_anat-T1w_acq-tfl"
    if xa30.exists():
        from medseg.preprocess import N4Options, correct_bias_field

        volume = load_volume(xa30)
        corrected = correct_bias_field(volume, options=N4Options.fast())[0]
        start = time.perf_counter()
        result = stripper.extract(corrected)
        report["siemens_xa30"] = {**result.as_dict(), "seconds": time.perf_counter() - start}
        save_qc(args.out / "skullstrip_xa30.png", corrected, np.asarray(result.mask.array) > 0,
                "raw Siemens XA30 T1 (N4 fast): brain mask")
        print(f"  Siemens XA30 raw T1: {result.volume_ml:.0f} ml, {report['siemens_xa30']['seconds']:.1f} s")

    # 6. bad input
    bad = {}
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    yy, zz = np.mgrid[0:128, 0:128]
    bottle = np.repeat((((yy - 64) ** 2 + (zz - 64) ** 2) < 50 ** 2)[None] * 800.0, 40, axis=0)
    for name, array in (("noise", rng.normal(100, 20, (96, 96, 96)).astype(np.float32)),
                        ("constant", np.full((64, 64, 64), 7.0, np.float32)),
                        ("bottle", bottle.astype(np.float32))):
        try:
            stripper.extract(Volume(array, affine))
            bad[name] = "no error (a mask was returned)"
        except NoBrainFoundError as exc:
            bad[name] = f"NoBrainFoundError: {exc}"
    try:
        from medseg.examples import example_spine

        stripper.extract(example_spine())
        bad["spine (PAM50 T2)"] = "no error (a mask was returned)"
    except NoBrainFoundError as exc:
        bad["spine (PAM50 T2)"] = f"NoBrainFoundError: {exc}"
    except Exception as exc:  # shared data absent
        bad["spine (PAM50 T2)"] = f"not run: {exc}"
    report["bad_input"] = bad
    print("  bad input:", bad)
    report["validation"] = validation_block(report, args.subjects)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'evaluation.json'}")
    if args.update_contract:
        import dataclasses

        from medseg.infer.contract import ModelContract, load_contract
        from medseg.io.atomic import write_text_atomic

        contract_path = runtime.path.parent / f"{MODEL_NAME}.json"
        contract = load_contract(contract_path)
        validation = ModelContract.from_dict({**contract.to_dict(), "validation": report["validation"]}).validation
        write_text_atomic(contract_path, dataclasses.replace(contract, validation=validation).to_json())
        print(f"validation written into {contract_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
