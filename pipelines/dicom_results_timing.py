"""Time the DICOM results (SEG, SR, SC) of one positioned localizer (sub-09), and print their sizes.

    python pipelines/dicom_results_timing.py   # needs ../shared/data (sub-09)

Prints seconds per object set and file sizes; the README quotes these figures.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from medseg.dicomout import write_dicom_results
from medseg.io import scan, write_dicom_series
from medseg.positioning.pipeline import position_volume, write_position_outputs
from medseg.preprocess.skullstrip import SkullStripper
from medseg.segment.data import Subject
from medseg.segment.infer import CCSegmenter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    subject = Subject.load(DATA / "brain" / "fs-training" / "sub-09")
    localizer, _ = subject.sample_localizer(rotation_deg=12.0, midline_offset_mm=1.0)
    segmenter, stripper = CCSegmenter(), SkullStripper()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid()}
        write_dicom_series(localizer.with_array(np.rint(np.asarray(localizer.array)).astype(np.int16), dicom=study),
                           root / "in" / "loc", series_description="localizer", series_number=1)
        for ref in scan([root / "in"]).series:
            result = position_volume(ref.load(), segmenter, stripper=stripper)
            write_position_outputs(result, root / "out")
            times = []
            for _ in range(3):
                start = time.perf_counter()
                paths = write_dicom_results(result, ref.files, root / "out")
                times.append(time.perf_counter() - start)
            sizes = ", ".join(f"{k} {p.stat().st_size / 1024:.0f} KiB" for k, p in paths.items())
            print(f"{ref.shape}: SEG+SR+SC in {min(times):.2f} s (best of 3); {sizes}")


if __name__ == "__main__":
    main()
