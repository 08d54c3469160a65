"""``preprocess``: foreground -> N4 -> skull stripping, for any image ``medseg info`` can read.

Outputs (NIfTI, the input's grid): ``bias_corrected.nii.gz``, ``bias_field.nii.gz`` (multiplicative,
corrected = image / field), ``brain_mask.nii.gz``, ``brain.nii.gz`` (corrected image inside the
mask) and ``preprocess.json`` (schema ``medseg.preprocess/1``: options, brain figures, timings).

N4 runs first on the head foreground (the input to skull stripping is then shading-free); a study
without a brain keeps its N4 outputs and gets the skull-stripping error recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medseg import __version__
from medseg.errors import MedsegError
from medseg.io import write_nifti
from medseg.io.atomic import write_text_atomic
from medseg.preprocess.n4 import N4Options
from medseg.preprocess.skullstrip import BrainExtraction, SkullStripper
from medseg.volume import Volume

SCHEMA = "medseg.preprocess/1"


@dataclass
class PreprocessResult:
    volume: Volume
    head: np.ndarray  # foreground mask (shared by N4, skull stripping and later stages)
    corrected: Volume
    bias_field: Volume | None  # None when N4 was off
    brain: BrainExtraction | None
    n4_options: N4Options
    error: MedsegError | None = None  # skull stripping's, when it found no brain
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
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
    from medseg.pipeline import PREPROCESS, Case, Settings, run_stages, stages_for

    settings = Settings(stripper=stripper, n4=n4, n4_options=n4_options, n4_mode="full")
    case = run_stages(Case(volume, settings, head=head_mask), stages_for(PREPROCESS, settings))
    seconds = {k: v for k, v in case.seconds.items() if k != "total"}
    options = n4_options or (N4Options.fast() if n4 == "fast" else N4Options())
    return PreprocessResult(volume, case.head, case.corrected, case.bias_field, case.brain, options,
                            case.brain_error, seconds)


def write_preprocess_outputs(result: PreprocessResult, out_dir: Path) -> dict[str, Path]:
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
    paths["result"] = write_text_atomic(out_dir / "preprocess.json", json.dumps(data, indent=2))
    return paths
