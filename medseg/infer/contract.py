"""The ``model.json`` contract of a shipped network, as a frozen, typed object.

Training writes the contract (:func:`medseg.segment.export.export_onnx`), inference reads every
value it uses from it: the tensor names, the network grid (size, size multiple, spacing, the
crop's distance below the top of the head), the normalisation percentiles and the probability
threshold. An integrator (``integration/node``, ``docs/onnx-integration.md``) reads the same JSON.

The dataclasses mirror the JSON key for key and are loaded with the configuration loader
(:func:`medseg.config.from_dict`): an unknown key, a wrong type or a choice outside its
``Literal`` is a :class:`ModelError` naming the file and the key. Two blocks are kept as plain
mappings because they record the training configuration verbatim and inference reads nothing from
them: ``model`` (the architecture) and ``training.augmentation``.

Versions: ``contract_version`` "1.x" is read by this medseg (a minor version only adds keys);
the model file's sha256 must be the one the contract records (:func:`check_model_file`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medseg.config import from_dict
from medseg.errors import ConfigError, ModelError

CONTRACT_VERSION = "1.1"  # what medseg.segment.export writes (1.1 added training.label_definition)
SUPPORTED_CONTRACT_MAJOR = "1"  # contract_version "1.x" is read by this medseg


@dataclass(frozen=True)
class Crop:
    """Where the network crop sits on a plane: the head's mean foreground column, and
    ``centre_row_mm_below_head_top`` below the top of the head in the plane."""

    method: str
    centre_column: str
    centre_row_mm_below_head_top: float
    outside: float = 0.0  # value of the grid outside the image


@dataclass(frozen=True)
class Normalization:
    """Percentile scaling of each network-grid plane over its Otsu foreground."""

    method: Literal["percentile"]
    lower_percentile: float
    upper_percentile: float
    region: str
    outside_image_value: float
    output: str

    @property
    def percentiles(self) -> tuple[float, float]:
        return self.lower_percentile, self.upper_percentile


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: Literal["float32"]
    layout: Literal["NCHW"]
    shape: tuple[int | str, ...]
    default_size: tuple[int, int]
    size_multiple: int
    spacing_mm: float
    orientation: str
    crop: Crop
    normalization: Normalization

    @property
    def size(self) -> int:
        """Side of the square network grid (pixels)."""
        return int(self.default_size[0])


@dataclass(frozen=True)
class OutputSpec:
    name: str
    dtype: Literal["float32"]
    shape: tuple[int | str, ...]
    activation: str
    labels: dict[str, str]  # channel index (as a string) -> label name
    threshold: float  # a pixel is label 1 where P(label 1) > threshold


@dataclass(frozen=True)
class Framework:
    medseg: str
    torch: str
    onnx: str


@dataclass(frozen=True)
class Training:
    data: str
    augmentation: dict[str, Any]  # the training run's augmentation config, verbatim
    epochs: int | None = None
    # What label 1 was trained on (contract 1.1): "freesurfer", FreeSurfer's label as it is (for
    # the CC, aseg 251-255 with the fornix and septum it often takes in); "cc_alone", that label
    # cleaned to the CC alone by medseg.segment.cc_alone. Missing (a 1.0 contract): "freesurfer".
    label_definition: Literal["freesurfer", "cc_alone"] | None = None

    @property
    def trained_on_cc_alone(self) -> bool:
        return self.label_definition == "cc_alone"


@dataclass(frozen=True)
class SubjectScore:
    subject: str
    dice: float
    hd95_mm: float
    label_area_mm2: float


@dataclass(frozen=True)
class VolumeScore:
    subject: str
    variant: str
    dice: float
    hd95_mm: float
    seconds: float
    volume_ml: float
    truth_ml: float


@dataclass(frozen=True)
class LocalizerScore:
    subject: str
    pitch_deg: float
    dice: float


@dataclass(frozen=True)
class Validation:
    """Held-out figures, written by ``pipelines/evaluate_cc.py`` (CC) or
    ``pipelines/evaluate_skullstrip.py`` (brain); a contract exported without an evaluation
    records only the training run's validation Dice (``val_dice_mean``)."""

    held_out_subjects: tuple[str, ...] = ()
    evaluated_by: str | None = None
    # corpus callosum
    midsagittal: tuple[SubjectScore, ...] | None = None
    dice_vs_tilt: dict[str, list[float]] | None = None  # "tilt_deg" and one curve per subject
    dice_vs_slab: dict[str, list[float]] | None = None  # "slab_mm" and one curve per subject
    simulated_localizers_dice: tuple[float, ...] | None = None
    mni152_2mm_template_dice: float | None = None
    # brain
    volumes: tuple[VolumeScore, ...] | None = None
    localizers_15x5mm: tuple[LocalizerScore, ...] | None = None
    mni152_2mm_dice: float | None = None
    # exported without an evaluation
    val_dice_mean: float | None = None


@dataclass(frozen=True)
class Parity:
    max_abs_diff_ort_vs_torch: float
    tested_shapes: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Variant:
    file: str
    sha256: str
    precision: str
    max_abs_logit_diff_vs_fp32: float
    label_change_fraction_vs_fp32: float
    compared_inputs: tuple[int, ...]


@dataclass(frozen=True)
class Variants:
    fp16: Variant | None = None


@dataclass(frozen=True)
class ModelContract:
    """One ``model.json``. Provenance: ``framework``, ``git_commit``, ``model`` (architecture),
    ``training`` (data, augmentation, epochs), ``opset``."""

    contract_version: str
    name: str
    task: str
    file: str
    sha256: str
    opset: int
    framework: Framework
    git_commit: str
    input: InputSpec
    output: OutputSpec
    model: dict[str, Any]  # the architecture config, verbatim (medseg.segment.nets.ModelConfig)
    training: Training
    validation: Validation
    parity: Parity
    variants: Variants = field(default_factory=Variants)

    def __post_init__(self) -> None:
        major = self.contract_version.split(".")[0]
        if major != SUPPORTED_CONTRACT_MAJOR:
            raise ModelError(f"{self.name}: contract_version {self.contract_version} is not supported "
                             f"(this medseg reads {SUPPORTED_CONTRACT_MAJOR}.x)")
        if "1" not in self.output.labels:
            raise ModelError(f"{self.name}: output.labels names no label 1 ({self.output.labels})")
        if not 0.0 < self.output.threshold < 1.0:
            raise ModelError(f"{self.name}: output.threshold {self.output.threshold} is not a probability in (0, 1)")

    @property
    def label(self) -> str:
        """The name of label 1 (the structure the network segments)."""
        return self.output.labels["1"]

    def model_file(self, precision: str = "fp32") -> tuple[str, str]:
        """(file name, sha256) of the fp32 model or of a variant ("fp16").

        Raises:
            ModelError: the contract lists no such variant.
        """
        if precision == "fp32":
            return self.file, self.sha256
        variant = getattr(self.variants, precision, None) if precision in _VARIANTS else None
        if variant is None:
            listed = [name for name in _VARIANTS if getattr(self.variants, name) is not None]
            raise ModelError(f"model {self.name} has no {precision} variant (variants: {listed or 'none'})")
        return variant.file, variant.sha256

    @classmethod
    def from_dict(cls, data: dict, where: str = "model.json") -> "ModelContract":
        """The contract of a parsed ``model.json``.

        Raises:
            ModelError: a version this medseg does not read, an unknown or missing key, a wrong type.
        """
        if not isinstance(data, dict):
            raise ModelError(f"{where}: a model contract is a JSON object, got {type(data).__name__}")
        version = str(data.get("contract_version") or "missing")
        if version.split(".")[0] != SUPPORTED_CONTRACT_MAJOR:  # before the keys: 2.x may differ
            raise ModelError(f"{where}: contract_version {version} is not supported "
                             f"(this medseg reads {SUPPORTED_CONTRACT_MAJOR}.x)")
        try:
            return from_dict(cls, data, where)
        except ConfigError as exc:
            raise ModelError(f"model contract {exc}") from exc
        except TypeError as exc:  # a required key is missing
            raise ModelError(f"model contract {where}: {exc}") from exc

    def to_dict(self) -> dict:
        """The JSON object of this contract (the inverse of :meth:`from_dict`; optional entries
        that are not set are left out)."""
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


_VARIANTS = tuple(f.name for f in dataclasses.fields(Variants))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None and f.default is None:
                continue  # an optional entry that is not set
            out[f.name] = _plain(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_contract(path: str | Path) -> ModelContract:
    """Read and check a ``model.json``.

    Raises:
        ModelError: missing, unreadable, not JSON, or not a contract this medseg reads.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model contract {path} not found (models ship in the package's models/; "
                         "set MEDSEG_MODELS or --models-dir to use others)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model contract {path} cannot be read ({exc})") from exc
    return ModelContract.from_dict(data, where=str(path))


def check_model_file(contract: ModelContract, folder: str | Path, precision: str = "fp32") -> Path:
    """The model file of ``contract`` (fp32 or a variant) in ``folder``, checked against the sha256
    the contract records (a model swapped or damaged after export is refused).

    Raises:
        ModelError: no such variant, the file is missing, or its sha256 differs (both values named).
    """
    from medseg.io.atomic import sha256_file

    name, expected = contract.model_file(precision)
    path = Path(folder) / name
    if not path.exists():
        raise ModelError(f"model file {path} not found")
    if not expected:
        raise ModelError(f"{path.name}: its contract records no sha256")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(f"{path}: sha256 {actual[:12]}... differs from the contract's "
                         f"{expected[:12]}...: the model file is not the one the contract describes")
    return path
