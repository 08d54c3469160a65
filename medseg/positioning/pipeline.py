"""``position``: load -> N4 -> skull stripping -> CC segmentation -> angles -> axial plan ->
measurements -> QC. The stages are listed in :data:`medseg.pipeline.POSITION`; this module turns
their :class:`~medseg.pipeline.Case` into the result and writes the outputs.

Skull stripping is optional (a ``SkullStripper`` passed in): it adds the brain mask and volume to
the outputs. The CC network works on whole-head images, so a failed skull stripping is recorded
in ``result.json`` and does not stop the positioning.

``result.json`` (schema ``medseg.position/1``) is documented in the README.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg import __version__
from medseg.infer.contract import ModelContract
from medseg.io import write_nifti
from medseg.io.atomic import write_json_atomic
from medseg.io.png import write_png
from medseg.pipeline import (
    LOCALIZER_N4,
    POSITION,
    Case,
    LocalizerN4,
    Settings,
    needed,
    run_stages,
    stages_for,
)
from medseg.positioning.angles import Localization
from medseg.positioning.morphometry import CCMeasurements
from medseg.positioning.plan import AxialPlan
from medseg.positioning.qc import render_qc
from medseg.preprocess.n4 import N4Options
from medseg.preprocess.skullstrip import BrainExtraction, SkullStripper
from medseg.segment.infer import CCSegmentation, CCSegmenter, is_localizer, localizer_search_slab
from medseg.volume import Volume

SCHEMA = "medseg.position/1"
OUTLINE_SMOOTHING_MM = 3.5  # box and line are fitted to the CC outline smoothed at this scale
CONVENTION = ("Angles in degrees, in the mid-sagittal plane, of the anterior-pointing line measured "
              "from the patient's anterior axis; positive when the anterior end is superior. "
              "Coordinates in mm, DICOM LPS. Pixel coordinates (x = column, y = row) refer to "
              "the mask/QC plane given in 'plane'.")


@dataclass
class PositionResult:
    volume: Volume
    segmentation: CCSegmentation
    localization: Localization
    plan: AxialPlan
    measurements: CCMeasurements
    seconds: dict[str, float] = field(default_factory=dict)
    brain: BrainExtraction | None = None
    brain_error: str | None = None
    corrected: Volume | None = None  # the bias-corrected image the CC network saw
    model: ModelContract | None = None  # the CC network's contract
    providers: list[str] | None = None  # the onnxruntime providers that ran it

    @property
    def warnings(self) -> list[str]:
        """What a reader must check: a mid-sagittal plane at the edge of its search, a failed
        skull stripping."""
        return (list(self.segmentation.warnings) + self.measurements.implausible
                + ([self.brain_error] if self.brain_error else []))

    def as_dict(self) -> dict:
        seg, meta = self.segmentation, self.volume.meta
        return {
            "schema": SCHEMA,
            "medseg_version": __version__,
            "convention": CONVENTION,
            "input": {"study_uid": meta.study_uid, "series_uid": meta.series_uid, "stack": meta.stack,
                      "description": meta.description, "series_number": meta.series_number,
                      "shape": list(self.volume.shape),
                      "spacing_mm": [round(float(s), 4) for s in self.volume.spacing],
                      "orientation": self.volume.orientation},
            "model": {"name": self.model.name if self.model else None,
                      "sha256": self.model.sha256 if self.model else None, "providers": self.providers},
            "midsagittal": {"kind": seg.kind, "slice_index": seg.slice_index,
                            "point_mm": [float(v) for v in seg.midsagittal_point],
                            "normal": [float(v) for v in seg.midsagittal_normal],
                            "symmetry_point_mm": _floats(seg.symmetry_point),
                            "symmetry_normal": _floats(seg.symmetry_normal),
                            "symmetry_offset_mm": _rounded(seg.symmetry_offset_mm, 3),
                            "symmetry_angle_deg": _rounded(seg.symmetry_angle_deg, 3)},
            "warnings": self.warnings,
            "plane": {"origin_mm": [float(v) for v in seg.plane.origin],
                      "x_vector_mm": [float(v) for v in seg.plane.x_vec],
                      "y_vector_mm": [float(v) for v in seg.plane.y_vec]},
            "segmentation": {"area_mm2": seg.area_mm2, "confidence": seg.confidence,
                             "candidates": seg.candidates,
                             **({"slice_choice": seg.slice_choice} if seg.slice_choice else {})},
            "angles": {**self.localization.as_dict(), "outline_smoothing_mm": OUTLINE_SMOOTHING_MM},
            "axial_plan": self.plan.as_dict(),
            "measurements": self.measurements.as_dict(),
            "brain": (self.brain.as_dict() if self.brain else
                      {"error": self.brain_error} if self.brain_error else None),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def _floats(values) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)




def localizer_n4_mode(mode: LocalizerN4 | None = None) -> LocalizerN4:
    """``mode``, or the default :data:`LOCALIZER_N4`."""
    return mode or LOCALIZER_N4


def n4_slab(volume: Volume, head: np.ndarray, *, skull_strip: bool,
            mode: LocalizerN4 | None = None) -> tuple[int, int] | None:
    """The slab N4 needs to be fitted on (see :data:`LOCALIZER_N4`), or None for all slices: a
    3D volume, a skull stripping (it reads every slice) or ``mode`` "full"."""
    if skull_strip or localizer_n4_mode(mode) == "full" or not head.any():
        return None
    return localizer_search_slab(volume, head)


def skips_n4(volume: Volume, *, skull_strip: bool, mode: LocalizerN4 | None = None) -> bool:
    """Whether a localizer is planned without N4 (``mode`` "off" and no skull stripping)."""
    return not skull_strip and localizer_n4_mode(mode) == "off" and is_localizer(volume)


def position_volume(volume: Volume, segmenter: CCSegmenter, *, n4: bool = True,
                    max_difference_deg: float = 10.0, n4_options: N4Options | None = None,
                    head_mask: np.ndarray | None = None, stripper: SkullStripper | None = None,
                    n4_mode: LocalizerN4 | None = None) -> PositionResult:
    """Run the positioning stages (:data:`medseg.pipeline.POSITION`) on one image (a localizer
    series or a 3D volume).

    Raises:
        NoCCFoundError / NoCorpusCallosumError: no CC in the image (a clear message, per study).
        InputError: no foreground.
    """
    settings = Settings(segmenter=segmenter, stripper=stripper, n4="fast" if n4 else "off",
                        n4_options=n4_options, n4_mode=n4_mode, max_difference_deg=max_difference_deg,
                        outline_smoothing_mm=OUTLINE_SMOOTHING_MM)
    case = run_stages(Case(volume, settings, head=head_mask), stages_for(POSITION, settings))
    return result_of(case)


def result_of(case: Case) -> PositionResult:
    """The :class:`PositionResult` of a Case that ran the positioning stages."""
    error = case.brain_error
    segmentation = needed(case.segmentation, "segmentation")
    localization = needed(case.localization, "localization")
    plan = needed(case.plan, "plan")
    measurements = needed(case.measurements, "measurements")
    segmenter = needed(case.settings.segmenter, "segmenter")
    return PositionResult(case.volume, segmentation, localization, plan, measurements, dict(case.seconds),
                          case.brain, f"{type(error).__name__}: {error}" if error else None, case.corrected,
                          model=segmenter.runtime.contract, providers=segmenter.runtime.providers)


def display_image(volume: Volume) -> Volume:
    """The image for review (``image.nii.gz``): int16 when rounding loses nothing visible (an
    intensity range of at least 256 within int16), else float32; 3D (the first volume of 4D)."""
    array = np.asarray(volume.array)
    if array.ndim == 4:
        array = array[..., 0]
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if array.dtype.kind in "iu" and lo >= -32768 and hi <= 32767:
        return volume.with_array(array.astype(np.int16))
    if hi - lo >= 256 and lo >= -32768 and hi <= 32767:
        return volume.with_array(np.rint(np.nan_to_num(array)).astype(np.int16))
    return volume.with_array(np.nan_to_num(array).astype(np.float32))


def write_position_outputs(result: PositionResult, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seg = result.segmentation

    def qc() -> Path:
        picture = render_qc(seg.image2d, seg.mask2d, seg.plane, result.localization,
                            title=result.volume.meta.description[:40])
        return write_png(picture, out_dir / "qc.png")

    writers = {
        "image": lambda: write_nifti(display_image(result.corrected or result.volume), out_dir / "image.nii.gz"),
        "mask": lambda: write_nifti(seg.mask, out_dir / "cc_mask.nii.gz"),
        "qc": qc,
    }
    if result.brain is not None:
        brain = result.brain.mask
        writers["brain_mask"] = lambda: write_nifti(brain, out_dir / "brain_mask.nii.gz")
    # The files are independent and their compression (zlib) releases the GIL: written side by
    # side, the largest one (image.nii.gz) sets the time. result.json, which names them, comes last.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="outputs") as pool:
        futures = {name: pool.submit(write) for name, write in writers.items()}
        paths = {name: future.result() for name, future in futures.items()}
    data = result.as_dict()
    data["files"] = {k: v.name for k, v in paths.items()}
    paths["result"] = write_json_atomic(out_dir / "result.json", data)
    return paths
