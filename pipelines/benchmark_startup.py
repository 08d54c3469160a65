"""Start-up cost of each `medseg` command as a fresh process: wall time, import time, peak memory.

Each command runs in its own child process (`python -X importtime -m medseg.cli ...`), so the
figures are what a user or a scanner-side script pays per call:
- wall: the child's whole run, from exec to exit;
- import: the sum of the top-level imports' cumulative times reported by ``-X importtime``
  (every import the command makes, lazy ones included);
- peak memory: the child's ``ru_maxrss`` (from ``os.wait4``);
- heavy: which of torch, MONAI, matplotlib (training/plotting libraries) the command imported.

Inputs are generated: a 35-slice sagittal localizer (256 x 256, 4 mm) and a 170-slice 3D T1 of
the ICBM152 head (nilearn), and three spine stations. Each command is run --repeat times and the
median is printed.

Usage: python pipelines/benchmark_startup.py [--repeat 3] [--only position,info] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "monai", "matplotlib")
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def make_inputs(root: Path) -> None:
    import numpy as np
    from pydicom.uid import generate_uid

    from medseg.demo import _scan_pitched, _write_spine, scan_localizer
    from medseg.examples import icbm152_head
    from medseg.io import write_dicom_series
    from medseg.volume import Volume, VolumeMeta

    head = icbm152_head()
    if head is None:
        raise SystemExit("pip install nilearn (the ICBM152 head) to run this benchmark")
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(), "PatientID": "BENCH"}
    write_dicom_series(scan_localizer(head, dicom=study), root / "study" / "localizer", series_number=1,
                       series_description="localizer sag 4mm")
    mask = np.asarray(head.array) > 0.1 * np.percentile(head.array, 99)
    centre = head.world_coordinates(np.argwhere(mask)).mean(axis=0)
    t1 = _scan_pitched(head, (256, 256, 170), (1.0, 1.0, 1.0), centre, 0.0)
    t1 = Volume(np.rint(np.asarray(t1.array) * 4).astype(np.int16), t1.affine, VolumeMeta(modality="MR", dicom=study))
    write_dicom_series(t1, root / "t1_170", series_number=2, series_description="t1 sag 1mm")
    _write_spine(root / "study" / "spine")


def input_paths(root: Path) -> dict[str, Path]:
    return {"localizer": root / "study" / "localizer", "t1": root / "t1_170", "spine": root / "study" / "spine",
            "study": root / "study"}


def commands(inputs: dict[str, Path], out: Path) -> dict[str, list[str]]:
    loc = str(inputs["localizer"])
    return {
        "--help": ["--help"],
        "info (170 files)": ["info", str(inputs["t1"]), "-q"],
        "convert (170 files)": ["convert", str(inputs["t1"]), "-o", str(out / "convert"), "-q"],
        "preprocess (localizer)": ["preprocess", loc, "--fast", "-o", str(out / "preprocess"), "-q"],
        "segment (localizer)": ["segment", loc, "-o", str(out / "segment"), "-q"],
        "position (localizer)": ["position", loc, "-o", str(out / "position"), "-q"],
        "stitch (3 stations)": ["stitch", str(inputs["spine"]), "-o", str(out / "stitch"), "-q"],
        "run (localizer + spine)": ["run", "-i", str(inputs["study"]), "-o", str(out / "run"), "-q"],
    }


def run_child(argv: list[str]) -> dict:
    """One fresh `medseg` process: wall seconds, import seconds, peak RSS (MB), heavy modules."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "medseg.cli", *argv], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    imports_us, modules = 0, set()
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            modules.add(match.group(4).split(".")[0])
            if len(match.group(3)) == 1:  # a top-level import (its cumulative time covers its children)
                imports_us += int(match.group(2))
    code = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "import_s": imports_us / 1e6, "peak_mb": usage.ru_maxrss / 1024,
            "heavy": sorted(m for m in HEAVY if m in modules), "exit": code}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="comma-separated command names (first word), e.g. position,info")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--make-inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_inputs:
        make_inputs(args.make_inputs)
        return 0
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Inputs are built in a child process: this process stays small, so that a child's
        # ru_maxrss (which counts the pages it shared with this process before exec) is its own.
        subprocess.run([sys.executable, __file__, "--make-inputs", str(Path(tmp) / "in")], check=True,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
        inputs = input_paths(Path(tmp) / "in")
        for name, argv in commands(inputs, Path(tmp) / "out").items():
            if args.only and name.split()[0].lstrip("-") not in args.only.replace("-", "").split(","):
                continue
            runs = [run_child(argv) for _ in range(args.repeat)]
            rows[name] = {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "import_s", "peak_mb")}
            rows[name].update(heavy=sorted({m for r in runs for m in r["heavy"]}),
                              exit=sorted({r["exit"] for r in runs}))
    print(f"median of {args.repeat} fresh processes, {os.cpu_count()} CPU core(s)")
    print(f"{'command':26s} {'wall s':>7s} {'import s':>8s} {'peak MB':>8s}  heavy imports  exit")
    for name, r in rows.items():
        print(f"{name:26s} {r['wall_s']:7.2f} {r['import_s']:8.2f} {r['peak_mb']:8.0f}  "
              f"{','.join(r['heavy']) or '-':13s}  {r['exit']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
