"""Throughput of `medseg run` on the local engine and on Dask (LocalCluster of 1 and 2 workers),
the scheduler's overhead per task, and the scaling model for a large run.

Studies are the benchmark's generated localizers (ICBM152 head, pitched, as DICOM). For each
engine the script reports studies per minute; then it times 500 empty tasks on a 2-worker cluster
for the scheduler's overhead per task, and prints the projected wall time of 10,000 studies on N
nodes from: T = start + studies x (per-study cost / workers + scheduler overhead per task).

Usage: python pipelines/benchmark_dask.py [--n 8] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmark import make_studies  # same folder (scripts run from pipelines/)

from medseg.batch import run as batch
from medseg.batch.dask_engine import DaskOptions


def timed_run(folder: Path, output: Path, options: batch.RunOptions) -> tuple[float, dict]:
    start = time.perf_counter()
    status, report = batch.run([folder], output, options)
    if status != 0:
        raise SystemExit(f"benchmark run failed (exit {status}); see {output}")
    return time.perf_counter() - start, report


def task_overhead(tasks: int = 500) -> float:
    """Seconds of scheduling per task: empty tasks through a 2-worker LocalCluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.submit(int, 0).result()
        start = time.perf_counter()
        futures = [client.submit(int, i, pure=False) for i in range(tasks)]
        client.gather(futures)
        return (time.perf_counter() - start) / tasks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="localizer studies")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_studies(root / "in", args.n)
        folder = root / "in" / "localizer"
        engines = [("local, --jobs 1", batch.RunOptions(quiet=True)),
                   ("dask, local:1", batch.RunOptions(quiet=True, engine="dask", dask=DaskOptions(cluster="local:1"))),
                   ("dask, local:2", batch.RunOptions(quiet=True, engine="dask", dask=DaskOptions(cluster="local:2")))]
        for name, options in engines:
            seconds, report = timed_run(folder, root / name.replace(" ", "").replace(",", "_"), options)
            engine = report["engine"]
            busy = [w["busy_seconds"] / w["studies"] for w in engine.get("per_worker", {}).values()]
            rows[name] = {"wall_s": round(seconds, 2), "studies_per_minute": round(60 * args.n / seconds, 1),
                          "per_study_busy_s": round(sum(busy) / len(busy), 3) if busy else None}
    overhead = task_overhead()
    per_study = rows["dask, local:2"]["per_study_busy_s"] or rows["local, --jobs 1"]["wall_s"] / args.n
    start = rows["dask, local:2"]["wall_s"] - args.n * per_study / 2
    print(f"{args.n} localizer studies, 2 CPU cores")
    print(f"{'engine':18s} {'wall s':>8s} {'studies/min':>12s} {'busy s/study':>13s}")
    for name, row in rows.items():
        print(f"{name:18s} {row['wall_s']:8.2f} {row['studies_per_minute']:12.1f} "
              f"{row['per_study_busy_s'] if row['per_study_busy_s'] is not None else '-':>13}")
    print(f"\nscheduler overhead per task: {overhead * 1000:.2f} ms; cluster start + model loading: "
          f"{max(start, 0):.1f} s")
    print("projected wall time for 10,000 localizer studies (workers of this machine's speed):")
    projection = {}
    for nodes, workers in ((1, 2), (10, 8), (50, 8)):
        hours = (max(start, 0) + 10_000 * (per_study / (nodes * workers) + overhead)) / 3600
        projection[f"{nodes}x{workers}"] = round(hours, 2)
        print(f"  {nodes:3d} nodes x {workers} workers: {hours:6.2f} h")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark_dask.json").write_text(json.dumps(
        {"engines": rows, "task_overhead_s": overhead, "start_s": start, "projection_h": projection}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
