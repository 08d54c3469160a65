"""Benchmark of the batch job: studies/s and per-stage time, ORT vs torch, peak memory.

N localizer studies and N 3D T1 studies are generated from the demo head (ICBM152 via nilearn,
pitched by different angles) as DICOM, then `medseg run` processes them (CPU, or CUDA/TensorRT
when a GPU is present and --device says so). The same network runs in onnxruntime and in torch
eager on the same batch of slices for the speed ratio. Results: a table on stdout, JSON and a
PNG bar plot in --out.

Every shipped model is also timed per plane in each precision variant (fp32, fp16) on the device.

Usage: python pipelines/benchmark.py [--n 3] [--device cpu] [--jobs 1] [--precision fp32]
       [--checkpoint runs/.../best.pt] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_studies(root: Path, n: int) -> None:
    from pydicom.uid import generate_uid

    from medseg.demo import _scan_pitched, scan_localizer
    from medseg.examples import icbm152_head
    from medseg.io import write_dicom_series
    from medseg.volume import Volume, VolumeMeta

    head = icbm152_head()
    if head is None:
        raise SystemExit("pip install nilearn (the demo head) to run the benchmark")
    mask = np.asarray(head.array) > 0.1 * np.percentile(head.array, 99)
    centre = head.world_coordinates(np.argwhere(mask)).mean(axis=0)
    for i in range(n):
        pitch = -10 + 20 * i / max(n - 1, 1)
        for kind in ("localizer", "t1"):
            study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid()}
            if kind == "localizer":  # 5 slabs of 5 mm centred on the head
                volume = scan_localizer(head, slices=5, thickness_mm=5.0, pitch_deg=pitch, offset_mm=0.0,
                                        dicom=study)
            else:
                t1 = _scan_pitched(head, (176, 176, 150), (1.25, 1.25, 1.25), centre, pitch)
                volume = Volume(np.rint(np.asarray(t1.array) * 4).astype(np.int16), t1.affine,
                                VolumeMeta(modality="MR", dicom=study))
            write_dicom_series(volume, root / kind / f"{kind}{i}", series_number=1,
                               series_description=f"{kind} sag")


def random_batch(runtime, batch: int) -> np.ndarray:
    """A random (batch, 1, H, W) input at the model's default size (same seed every time)."""
    size = runtime.contract.input.size
    return np.random.default_rng(0).normal(size=(batch, 1, size, size)).astype(np.float32)


def seconds_per_call(runtime, x: np.ndarray, repeats: int) -> float:
    """Mean seconds of one session call on ``x``, after a warm-up call."""
    runtime.run(x)
    start = time.perf_counter()
    for _ in range(repeats):
        runtime.run(x)
    return (time.perf_counter() - start) / repeats


def model_latency(device: str, batch: int = 8) -> dict:
    """ms per plane of each shipped model and precision variant on ``device`` (same batch)."""
    from medseg.infer.runtime import ModelError, load_runtime

    rows = {}
    for name in ("cc_attention_unet", "skullstrip_attention_unet"):
        for precision in ("fp32", "fp16"):
            try:
                runtime = load_runtime(name, device=device, precision=precision)
            except ModelError as exc:
                rows[f"{name}/{precision}"] = str(exc)
                continue
            seconds = seconds_per_call(runtime, random_batch(runtime, batch), 5)
            rows[f"{name}/{precision}"] = {"ms_per_plane": seconds / batch * 1000, "providers": runtime.providers}
    return rows


def ort_vs_torch(checkpoint: Path | None, batch: int = 8) -> dict:
    from medseg.infer.runtime import load_runtime

    runtime = load_runtime()
    x = random_batch(runtime, batch)
    ort_s = seconds_per_call(runtime, x, 3)
    result = {"batch": batch, "onnxruntime_ms_per_slice": ort_s / batch * 1000, "providers": runtime.providers}
    if checkpoint:
        import torch

        from medseg.config import from_dict
        from medseg.segment.nets import build_model
        from medseg.segment.train import TrainingConfig

        data = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model = build_model(from_dict(TrainingConfig, data["config"]).model, x.shape[-1])
        model.load_state_dict(data["model"])
        model.eval()
        with torch.no_grad():
            model(torch.from_numpy(x))
            start = time.perf_counter()
            for _ in range(3):
                model(torch.from_numpy(x))
        torch_s = (time.perf_counter() - start) / 3
        result["torch_eager_ms_per_slice"] = torch_s / batch * 1000
        result["ort_speedup_over_torch"] = torch_s / ort_s
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    parser.add_argument("--no-skullstrip", action="store_true")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    from medseg.batch.run import RunOptions, run

    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_studies(Path(tmp), args.n)
        for kind in ("localizer", "t1"):
            start = time.perf_counter()
            status, report = run([Path(tmp) / kind], Path(tmp) / f"out_{kind}",
                                 RunOptions(device=args.device, jobs=args.jobs, quiet=True,
                                            precision=args.precision, skull_strip=not args.no_skullstrip))
            seconds = time.perf_counter() - start
            stages = {k: v / args.n for k, v in report["seconds"].items() if k not in ("total",)}
            rows[kind] = {"studies": report["studies"], "failed": report["failed_studies"],
                          "seconds_per_study": seconds / args.n, "studies_per_second": args.n / seconds,
                          "stage_seconds_per_study": stages, "providers": report["providers"]}
    rows["ort_vs_torch"] = ort_vs_torch(args.checkpoint)
    rows["model_latency"] = model_latency(args.device)
    rows["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'kind':10s} {'s/study':>8s} {'studies/s':>9s}  stages (s/study)")
    for kind in ("localizer", "t1"):
        r = rows[kind]
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stage_seconds_per_study"].items())
        print(f"{kind:10s} {r['seconds_per_study']:8.2f} {r['studies_per_second']:9.3f}  {stages}"
              f"  (failed {r['failed']}/{r['studies']})")
    print("onnxruntime vs torch:", {k: (round(v, 2) if isinstance(v, float) else v)
                                    for k, v in rows["ort_vs_torch"].items()})
    for key, value in rows["model_latency"].items():
        print(f"{key:36s} " + (f"{value['ms_per_plane']:.1f} ms/plane on {value['providers'][0]}"
                               if isinstance(value, dict) else value))
    print(f"peak memory: {rows['peak_memory_mb']:.0f} MB")
    (args.out / "benchmark.json").write_text(json.dumps(rows, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=120)
    for i, kind in enumerate(("localizer", "t1")):
        left = 0.0
        for stage, value in rows[kind]["stage_seconds_per_study"].items():
            ax.barh(i, value, left=left, label=stage if i == 0 else None)
            left += value
    ax.set_yticks([0, 1], ["localizer", "3D T1"])
    ax.set_xlabel("seconds per study (CPU)" if args.device == "cpu" else f"seconds per study ({args.device})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "benchmark.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
