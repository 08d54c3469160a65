"""The processing stages of one image, listed in one place, over a :class:`Case`.

A :class:`Case` holds what is known about one image so far: the input :class:`Volume`, the head
mask, the bias-corrected image and field, the brain mask (a label Volume), the CC segmentation,
angles, plan and measurements, what each stage chose (``provenance``) and the seconds each stage
took. A stage is a plain function ``Case -> Case`` (a new Case, the old one untouched);
:func:`run_stages` runs a list of them and times each one under its name, so no stage times
itself. The lists:

- :data:`PREPROCESS` (``medseg preprocess``): foreground mask -> N4 -> skull stripping;
- :data:`POSITION` (``medseg position``, ``medseg run``, ``medseg listen``): the same, then CC
  segmentation -> angles, axial plan and measurements. Writing the outputs is the caller's
  (:func:`medseg.positioning.pipeline.write_position_outputs`).

The timing keys (``mask``, ``n4``, ``skullstrip``, ``segment``, ``angles``, and ``total`` for the
whole list) are those of ``result.json`` and ``preprocess.json``.

It sits above the stage packages (it lists their stages): ``medseg position`` reaches it through
:mod:`medseg.positioning.pipeline`; ``medseg preprocess`` through :func:`preprocess_volume` here.

``preprocess``: foreground -> N4 -> skull stripping, for any image ``medseg info`` can read.

Outputs (NIfTI, the input's grid): ``bias_corrected.nii.gz``, ``bias_field.nii.gz`` (multiplicative,
corrected = image / field), ``brain_mask.nii.gz``, ``brain.nii.gz`` (corrected image inside the
mask) and ``preprocess.json`` (schema ``medseg.preprocess/1``: options, brain figures, timings).

N4 runs first on the head foreground (the input to skull stripping is then shading-free); a study
without a brain keeps its N4 outputs and gets the skull-stripping error recorded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, TypeVar

import numpy as np

from medseg import __version__
from medseg.errors import MedsegError
from medseg.errors import Stage as StageName
from medseg.volume import Volume

if TYPE_CHECKING:
    from medseg.positioning.angles import Localization
    from medseg.positioning.morphometry import CCMeasurements
    from medseg.positioning.plan import AxialPlan
    from medseg.preprocess.n4 import N4Options
    from medseg.preprocess.skullstrip import BrainExtraction, SkullStripper
    from medseg.segment.infer import CCSegmentation, CCSegmenter


# N4 of a localizer when no brain mask is asked for: "off" plans it on the image as it came (the
# default: the CC network is trained with random bias fields, and N4 was the largest stage of the
# plan's latency); "slab" fits the field on the slices the CC search reads only; "full" on every
# slice. With skull stripping a localizer gets the full N4 whatever this says (the stripper reads
# every slice). pipelines/evaluate_rotated_localizers.py (--n4, --bias) and
# pipelines/evaluate_localizer_n4.py re-measure each choice; the README (*Latency*) has the figures.
LocalizerN4 = Literal["off", "slab", "full"]
LOCALIZER_N4: LocalizerN4 = "off"


@dataclass(frozen=True)
class Settings:
    """What the stages are run with (the models and the choices), the same for every case of a run."""

    segmenter: "CCSegmenter | None" = None
    stripper: "SkullStripper | None" = None  # None: no skull stripping
    n4: Literal["default", "fast", "off"] = "fast"
    n4_options: "N4Options | None" = None  # overrides the ``n4`` profile
    n4_mode: LocalizerN4 | None = None  # None: LOCALIZER_N4
    max_difference_deg: float = 10.0
    outline_smoothing_mm: float = 3.5


@dataclass(frozen=True)
class Case:
    """One image and what the stages found so far (fields are None until their stage ran)."""

    volume: Volume
    settings: Settings = Settings()
    head: np.ndarray | None = None  # foreground mask, shared by N4, skull stripping and the segmenter
    corrected: Volume | None = None  # the image later stages read (the input when N4 is off)
    bias_field: Volume | None = None
    brain: "BrainExtraction | None" = None
    brain_error: MedsegError | None = None  # skull stripping's, when it found no brain
    segmentation: "CCSegmentation | None" = None
    localization: "Localization | None" = None
    plan: "AxialPlan | None" = None
    measurements: "CCMeasurements | None" = None
    provenance: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    seconds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def noting(self, **provenance: Any) -> Mapping[str, Any]:
        """``provenance`` with entries added (for ``replace(case, provenance=...)``)."""
        return MappingProxyType({**self.provenance, **provenance})


Stage = tuple[StageName, Callable[[Case], Case]]
T = TypeVar("T")


def needed(value: T | None, what: str) -> T:
    """A Case field an earlier stage sets, or a setting a stage needs (the lists run in order)."""
    if value is None:
        raise RuntimeError(f"the case has no {what}")
    return value


def run_stages(case: Case, stages: tuple[Stage, ...] | list[Stage]) -> Case:
    """Run ``stages`` in order; each one's wall seconds under its name, the whole under ``total``.
    A stage that raises stops the list (a MedsegError of no particular stage gets the stage's
    name in ``stage``)."""
    seconds = dict(case.seconds)
    start = time.perf_counter()
    for name, stage in stages:
        t = time.perf_counter()
        try:
            case = stage(case)
        except MedsegError as exc:
            if exc.stage == MedsegError.stage:
                exc.stage = name
            raise
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
    seconds["total"] = seconds.get("total", 0.0) + time.perf_counter() - start
    return replace(case, seconds=MappingProxyType(seconds))


# -- stages ------------------------------------------------------------------------------------
def find_foreground(case: Case) -> Case:
    """The head mask (kept when the caller gave one)."""
    if case.head is not None:
        return case
    from medseg.preprocess.normalize import foreground_mask

    return replace(case, head=foreground_mask(case.volume))


def correct_bias(case: Case) -> Case:
    """N4 (the ``n4`` profile; a localizer without skull stripping on its CC-search slab only, see
    :func:`medseg.positioning.pipeline.n4_slab`)."""
    from medseg.preprocess.n4 import N4Options, correct_bias_field

    s = case.settings
    options = s.n4_options or (N4Options.fast() if s.n4 == "fast" else N4Options())
    from medseg.positioning.pipeline import n4_slab, skips_n4

    if s.n4 == "off":
        return replace(case, corrected=case.volume, bias_field=None, provenance=case.noting(n4=None))
    if skips_n4(case.volume, skull_strip=s.stripper is not None, mode=s.n4_mode):
        return replace(case, corrected=case.volume, bias_field=None,
                       provenance=case.noting(n4=None, n4_skipped="localizer planned as it came"))

    slab = n4_slab(case.volume, needed(case.head, "head mask (the mask stage)"), skull_strip=s.stripper is not None,
                   mode=s.n4_mode)
    corrected, bias = correct_bias_field(case.volume, case.head, options=options, slices=slab)
    return replace(case, corrected=corrected, bias_field=bias, provenance=case.noting(n4=options, n4_slab=slab))


def strip_skull(case: Case) -> Case:
    """The brain mask, when a stripper is set; a study without a brain keeps going with the error
    recorded (the CC network works on whole-head images)."""
    if case.settings.stripper is None:
        return case
    try:
        brain = case.settings.stripper.extract(needed(case.corrected, "corrected image (the n4 stage)"),
                                               head_mask=case.head)
    except MedsegError as exc:
        return replace(case, brain_error=exc)
    return replace(case, brain=brain)


def segment_cc(case: Case) -> Case:
    """The mid-sagittal plane and the CC mask."""
    segmenter = needed(case.settings.segmenter, "CC segmenter (Settings.segmenter)")
    corrected = needed(case.corrected, "corrected image (the n4 stage)")
    return replace(case, segmentation=segmenter.segment(corrected, head_mask=case.head))


def localize_and_plan(case: Case) -> Case:
    """Angles of the CC, the axial plan along the final line, and the CC measurements."""
    from medseg.positioning.angles import clean_mask, localize
    from medseg.positioning.morphometry import measure
    from medseg.positioning.plan import plan_axial

    seg, s = needed(case.segmentation, "CC segmentation (the segment stage)"), case.settings
    segmenter = needed(s.segmenter, "CC segmenter (Settings.segmenter)")
    localization = localize(seg.mask2d, seg.plane, max_difference_deg=s.max_difference_deg,
                            probability=seg.probability2d, smoothing_mm=s.outline_smoothing_mm,
                            threshold=segmenter.threshold)
    plan = plan_axial(np.array(localization.final.center_mm), np.array(localization.final.direction_lps),
                      seg.midsagittal_normal)
    measurements = measure(clean_mask(seg.mask2d), seg.plane, np.array(localization.box.direction_px))
    return replace(case, localization=localization, plan=plan, measurements=measurements)


# -- the lists ---------------------------------------------------------------------------------
PREPROCESS: tuple[Stage, ...] = (("mask", find_foreground), ("n4", correct_bias), ("skullstrip", strip_skull))
POSITION: tuple[Stage, ...] = PREPROCESS + (("segment", segment_cc), ("angles", localize_and_plan))


def stages_for(stages: tuple[Stage, ...], settings: Settings) -> tuple[Stage, ...]:
    """``stages`` without skull stripping when no stripper is set (so no ``skullstrip`` timing)."""
    return tuple(s for s in stages if s[0] != "skullstrip" or settings.stripper is not None)


# -- the preprocess command -------------------------------------------------------------------
SCHEMA = "medseg.preprocess/1"


@dataclass
class PreprocessResult:
    volume: Volume
    head: np.ndarray  # foreground mask (shared by N4, skull stripping and later stages)
    corrected: Volume
    bias_field: Volume | None  # None when N4 was off
    brain: "BrainExtraction | None"
    n4_options: "N4Options"
    error: MedsegError | None = None  # skull stripping's, when it found no brain
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        meta = self.volume.meta
        return {
            "schema": SCHEMA,
            "medseg_version": __version__,
            "input": {"series_uid": meta.series_uid, "description": meta.description,
                      "shape": list(self.volume.shape),
                      "spacing_mm": [round(float(s), 4) for s in self.volume.spacing]},
            "n4": asdict(self.n4_options) if self.bias_field is not None else None,
            "brain": self.brain.as_dict() if self.brain else None,
            "error": {"type": type(self.error).__name__, "message": str(self.error)} if self.error else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def preprocess_volume(volume: Volume, stripper: SkullStripper | None, *,
                      n4: Literal["default", "fast", "off"] = "default", n4_options: N4Options | None = None,
                      head_mask: np.ndarray | None = None) -> PreprocessResult:
    """Bias-correct and skull-strip one image: the stages :data:`medseg.pipeline.PREPROCESS`
    (``n4_options`` overrides the ``n4`` profile; a given ``head_mask`` is used instead of
    computing one; N4 is fitted on every slice). Raises InputError for an image without
    foreground; a failed skull stripping is returned in ``error`` (the N4 outputs stay usable)."""
    settings = Settings(stripper=stripper, n4=n4, n4_options=n4_options, n4_mode="full")
    case = run_stages(Case(volume, settings, head=head_mask), stages_for(PREPROCESS, settings))
    seconds = {k: v for k, v in case.seconds.items() if k != "total"}
    from medseg.preprocess.n4 import N4Options

    options = n4_options or (N4Options.fast() if n4 == "fast" else N4Options())
    return PreprocessResult(volume, needed(case.head, "head mask"), needed(case.corrected, "corrected image"),
                            case.bias_field, case.brain, options, case.brain_error, seconds)


def write_preprocess_outputs(result: PreprocessResult, out_dir: Path) -> dict[str, Path]:
    from medseg.io import write_nifti
    from medseg.io.atomic import write_json_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"corrected": write_nifti(result.corrected, out_dir / "bias_corrected.nii.gz")}
    if result.bias_field is not None:
        paths["bias_field"] = write_nifti(result.bias_field, out_dir / "bias_field.nii.gz")
    if result.brain is not None:
        paths["brain_mask"] = write_nifti(result.brain.mask, out_dir / "brain_mask.nii.gz")
        stripped = np.asarray(result.corrected.array, np.float32) * np.asarray(result.brain.mask.array)
        paths["brain"] = write_nifti(result.corrected.with_array(stripped), out_dir / "brain.nii.gz")
    data = result.as_dict()
    data["files"] = {k: v.name for k, v in paths.items()}
    paths["result"] = write_json_atomic(out_dir / "preprocess.json", data)
    return paths
