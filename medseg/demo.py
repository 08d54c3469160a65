"""``medseg demo``: build a small study folder and run the whole batch job on it.

Built on the fly from data available after ``pip install medseg[demo]``:
- brain: nilearn's ICBM152 2009a T1 template, pitched by a known angle, written as a sagittal
  localizer (5 slices of 5 mm) and a 3D T1 (1.5 mm) with scanner-like DICOM geometry; the run
  is done for the template both unpitched and pitched, so the measured pitch change can be
  compared with the one applied. Without nilearn the built-in phantom head is used instead
  (it has no real corpus callosum, so positioning reports that none was found).
- spine: three overlapping sagittal stations of a generated spine-like texture with a 2.5 mm
  table-position error on the middle station.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.uid import generate_uid
from scipy import ndimage

from medseg.examples import icbm152_head
from medseg.io import write_dicom_series
from medseg.resample import resample_to_grid
from medseg.synth.phantom import HeadPhantom, phantom_volume, sagittal_affine
from medseg.synth.stations import StationSpec, make_stations
from medseg.volume import Volume, VolumeMeta

if TYPE_CHECKING:
    from medseg.batch.run import RunOptions

log = logging.getLogger(__name__)

DEMO_PITCH_DEG = 10.0


def _scan_pitched(head: Volume, shape, spacing, centre, pitch_deg) -> Volume:
    """The head "scanned" pitched nose-up by ``pitch_deg``: pixels are sampled through a grid
    rotated about the L-R axis, and stored with the scanner's unrotated sagittal grid, so that in
    patient space the head itself is rotated."""
    t = np.radians(pitch_deg)
    rotation = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    stored = sagittal_affine(shape, spacing)
    stored[:3, 3] += centre
    sampling = np.eye(4)
    sampling[:3, :3] = rotation @ stored[:3, :3]
    sampling[:3, 3] = centre + rotation @ (stored[:3, 3] - centre)
    values = resample_to_grid(head, tuple(shape), sampling)
    return Volume(values.array, stored, VolumeMeta(modality="MR"))


def scan_localizer(head: Volume, *, slices: int = 35, thickness_mm: float = 4.0, pitch_deg: float = 0.0,
                   offset_mm: float = 1.0, dicom: dict | None = None) -> Volume:
    """A sagittal localizer of ``head``: ``slices`` contiguous slabs of ``thickness_mm`` (256 x 256
    pixels of 1 mm), each the mean of 1 mm planes, the middle one ``offset_mm`` off the head's
    centre, the head pitched nose-up by ``pitch_deg``; int16, as a scanner stores it."""
    mask = np.asarray(head.array) > 0.1 * np.percentile(head.array, 99)
    centre = head.world_coordinates(np.argwhere(mask)).mean(axis=0)
    sub = max(1, int(round(thickness_mm)))
    fine = _scan_pitched(head, (256, 256, slices * sub), (1.0, 1.0, thickness_mm / sub),
                         centre + [offset_mm, 0, 0], pitch_deg)
    slabs = np.asarray(fine.array, dtype=np.float32).reshape(256, 256, slices, sub).mean(axis=3)
    affine = fine.affine.copy()
    affine[:3, 2] *= sub
    affine[:3, 3] = fine.world_coordinates(np.array([[0.0, 0.0, (sub - 1) / 2]]))[0]
    return Volume(np.rint(slabs * 4).astype(np.int16), affine, VolumeMeta(modality="MR", dicom=dicom or {}))


def _write_brain(folder: Path, head: Volume, pitch_deg: float, number: int) -> None:
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
             "PatientID": f"DEMO-{number:04d}", "PatientName": "Demo^Head", "StudyID": str(number),
             "StudyDescription": f"demo head, pitch {pitch_deg:+.0f} deg", "PatientPosition": "HFS"}
    mask = np.asarray(head.array) > 0.1 * np.percentile(head.array, 99)
    centre = head.world_coordinates(np.argwhere(mask)).mean(axis=0)
    # localizer: 5 slabs of 5 mm, the middle one 1 mm off the midline
    localizer = scan_localizer(head, slices=5, thickness_mm=5.0, pitch_deg=pitch_deg, offset_mm=1.0, dicom=study)
    write_dicom_series(localizer, folder / "localizer", series_description=f"localizer sag 5mm pitch {pitch_deg:.0f}",
                       series_number=1)
    t1 = _scan_pitched(head, (150, 150, 110), (1.5, 1.5, 1.5), centre, pitch_deg)
    t1 = Volume(np.rint(np.asarray(t1.array) * 4).astype(np.int16), t1.affine, VolumeMeta(modality="MR", dicom=study))
    write_dicom_series(t1, folder / "t1_3d", series_description=f"t1 mprage sag 1.5mm pitch {pitch_deg:.0f}",
                       series_number=2)


def _write_spine(folder: Path) -> None:
    rng = np.random.default_rng(7)
    texture = ndimage.gaussian_filter(rng.normal(size=(40, 40, 220)), 2.5)
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [30.0, -30.0, -220.0]
    source = Volume(((texture - texture.min()) / np.ptp(texture) * 1000 + 100).astype(np.float32), affine)
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
             "PatientID": "DEMO-SPINE", "BodyPartExamined": "SPINE", "StudyDescription": "demo spine"}
    specs = [StationSpec(218, 60, 1.2, 2.0, 1.0, 0.2), StationSpec(90, -80, 1.5, 2.5, 1.4, 0.2, (0, 0, 2.5)),
             StationSpec(-50, -218, 1.0, 2.0, 0.8, 0.2)]
    for number, station in zip((11, 12, 13), make_stations(source, specs).stations):
        station = Volume(np.rint(np.asarray(station.array)).astype(np.int16), station.affine,
                         VolumeMeta(modality="MR", dicom=study))
        write_dicom_series(station, folder / f"station{number - 10}", series_number=number,
                           series_description=f"t2 tse sag spine {number - 10}/3")


def build_demo_study(folder: Path, *, pitch_deg: float = DEMO_PITCH_DEG) -> Path:
    """Write the demo study folder under ``folder/dicom`` (idempotent) and return it."""
    root = Path(folder) / "dicom"
    if (root / ".complete").exists():
        return root
    head = icbm152_head()
    if head is None:
        log.warning("nilearn is not installed (pip install 'medseg[demo]'): using the phantom head")
        image, _ = phantom_volume(HeadPhantom(), (160, 160, 140), sagittal_affine((160, 160, 140), (1.5,) * 3))
        head = image
    _write_brain(root / "head_reference", head, 0.0, 1)
    _write_brain(root / "head_pitched", head, pitch_deg, 2)
    _write_spine(root / "spine")
    (root / ".complete").write_text("ok")
    return root


def run_demo(output: Path, *, quiet: bool = False, options: RunOptions | None = None) -> int:
    """Build the demo study, run the batch job on it (``options``: default ``RunOptions()``), and
    print where to look."""
    import dataclasses

    from medseg.batch.run import RunOptions, run

    output = Path(output)
    dicom = build_demo_study(output)
    options = dataclasses.replace(options or RunOptions(), quiet=quiet or (options.quiet if options else False))
    status, report = run([dicom], output / "results", options)
    summary = json.loads((output / "results" / "summary.json").read_text())
    angles: dict[tuple[str, str], float] = {}
    for study in summary["studies"]:
        for row in study["series"]:
            outcome = (f"final {row['final_angle_deg']:+.1f} deg" if "final_angle_deg" in row
                       else row.get("message", "")[:70])
            print(f"  {row.get('series', ''):36s} {row.get('stage', ''):9s} {row.get('status', ''):8s} {outcome}")
            if "final_angle_deg" in row and "_pitch_" in row["series"]:
                kind, pitch = row["series"].rsplit("_pitch_", 1)
                angles[(kind[5:], pitch)] = row["final_angle_deg"]
    for kind in sorted({k for k, _ in angles}):
        reference, pitched = angles.get((kind, "0")), angles.get((kind, f"{DEMO_PITCH_DEG:.0f}"))
        if reference is not None and pitched is not None:
            print(f"{kind}: measured pitch change {pitched - reference:+.1f} deg (applied {DEMO_PITCH_DEG:+.1f})")
    print(f"demo study (DICOM): {dicom}")
    print(f"results: {output / 'results'} (open index.html)")
    return status
