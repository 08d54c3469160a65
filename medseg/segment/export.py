"""Export a trained 2D sagittal network (CC or brain mask) to ONNX with its ``model.json``
contract, checking ORT/torch parity.

The contract is the single source of the preprocessing at inference: medseg's own inference and
any integrator (C++/C#/Node) read the same values from it. Export writes training's values into it
(grid size and spacing from the training config, the crop distance of
:data:`medseg.segment.data.CROP_TOP_TO_CENTRE_MM`, the plane normalisation of
:data:`medseg.infer.normalize2d.NORMALIZATION`), checked as a
:class:`~medseg.infer.contract.ModelContract` before it is written.

``pipelines/export.py`` runs the whole export (ONNX, fp16 variant, contract with the validation
figures of an evaluation).
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from medseg import __version__
from medseg.config import from_dict
from medseg.infer.contract import CONTRACT_VERSION, ModelContract, Variant, load_contract
from medseg.infer.normalize2d import NORMALIZATION
from medseg.io.atomic import atomic_path, sha256_file, write_text_atomic
from medseg.segment.data import CROP_TOP_TO_CENTRE_MM
from medseg.segment.nets import build_model, size_multiple
from medseg.segment.train import TrainingConfig

OPSET = 17
THRESHOLD = 0.5  # P(label 1) above which a pixel is label 1 (what training's validation Dice uses)
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# What each training target's contract says (task, label 1, how planes are cropped).
TARGETS = {
    "corpus_callosum": {
        "task": "corpus callosum segmentation on a sagittal plane",
        "label": "corpus_callosum",
        "crop": "centre on the head in this plane",
        "data": "FreeSurfer subjects (T1.mgz + aseg.mgz CC labels 251-255; a subject with aseg.mgz alone: "
                "images synthesised from its labels)",
        # medseg.segment.data cleans the label to the CC alone before training
        "label_definition": "cc_alone",
    },
    "brain": {
        "task": "brain extraction (skull stripping) on sagittal planes across the head",
        "label": "brain",
        "crop": "one crop for every plane of a series: centred on the head as seen in the plane "
                "through the head's centre (3D head mask centroid), moved along the normal",
        "data": "FreeSurfer subjects (T1.mgz + brainmask.mgz, nonzero = brain)",
        "label_definition": "freesurfer",
    },
}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _weights_note(data: dict) -> str:
    """What the contract says of an averaged or interpolated checkpoint ('' for one run)."""
    interpolated = data.get("interpolated")
    if interpolated:
        return (f"; weights: {1 - interpolated['alpha']:g} x the starting network (sha256 "
                f"{interpolated['start_sha256'][:12]}...) + {interpolated['alpha']:g} x the run fine-tuned from "
                f"it (learning rate {interpolated['learning_rate']:g}, {interpolated['epochs']} epochs)")
    runs = data.get("averaged_from")
    if not runs:
        return ""
    each = "; ".join(f"learning rate {r['learning_rate']:g}, {r['epochs']} epochs" for r in runs)
    return (f"; weights: the uniform average of {len(runs)} runs fine-tuned from the same start "
            f"({each})")


def sha256(path: Path) -> str:
    """sha256 of a model file (the value written into model.json)."""
    return sha256_file(path)


def average_checkpoints(checkpoints: Sequence[str | Path]) -> dict:
    """One checkpoint whose weights are the uniform average of those of ``checkpoints`` (a
    "model soup", Wortsman et al. 2022). Only runs fine-tuned from the same starting weights
    (``train.init_from``, the same file) lie close enough for their average to be a network at
    all, so the model, data, augmentation and starting file must match; any other training
    setting (learning rate, length, loss, seed) may differ. Runs that record their starting
    file's sha256 (training records it) must record the same one: the file may have been
    replaced between runs. What is not checked: the start of runs made before that record, and
    the code each run was trained with; say so where the average is described. The result
    records each run under ``averaged_from`` and has no single epoch.

    Raises:
        ValueError: fewer than two checkpoints, or ones that differ in more than their schedule.
    """
    if len(checkpoints) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    loaded = [torch.load(c, map_location="cpu", weights_only=False) for c in checkpoints]
    first = loaded[0]["config"]
    for path, data in zip(checkpoints, loaded):
        config = data["config"]
        for key in ("model", "data", "augment"):
            if config[key] != first[key]:
                raise ValueError(f"{path}: its {key} config differs from {checkpoints[0]}'s")
        start, first_start = config["train"].get("init_from"), first["train"].get("init_from")
        if not start or not first_start or Path(start).resolve() != Path(first_start).resolve():
            raise ValueError(f"{path}: not fine-tuned from the same starting weights as {checkpoints[0]} "
                             "(train.init_from)")
        recorded, first_recorded = data.get("init_sha256"), loaded[0].get("init_sha256")
        if recorded and first_recorded and recorded != first_recorded:
            raise ValueError(f"{path}: not fine-tuned from the same starting weights as {checkpoints[0]} "
                             f"({start} held sha256 {recorded[:12]}... then, {first_recorded[:12]}... for the first)")
    states = [data["model"] for data in loaded]
    model = {key: (torch.stack([state[key] for state in states]).mean(dim=0).to(value.dtype)
                   if value.is_floating_point() else value)
             for key, value in states[0].items()}
    runs = [{"checkpoint": str(path), "epochs": data.get("epoch"),
             "learning_rate": data["config"]["train"]["learning_rate"], "val_dice": data.get("val_dice")}
            for path, data in zip(checkpoints, loaded)]
    return {"model": model, "config": first, "epoch": None, "val_dice": None, "averaged_from": runs}


def interpolate_with_start(checkpoint: str | Path, alpha: float, start: str | Path | None = None) -> dict:
    """One checkpoint whose weights are ``(1 - alpha) x`` those the run started from ``+ alpha x``
    its own: the weight-space ensemble of a fine-tuned network and its start (WiSE-FT, Wortsman
    et al., CVPR 2022), which keeps what fine-tuning learnt while staying near the start on data
    that neither saw. The start is ``train.init_from`` (or ``start``, the file the run started
    from when that path now holds another file), read the way training read it.

    Raises:
        ValueError: alpha outside (0, 1), a run that was not fine-tuned, a missing start, or a
            start file that is not the one the run started from (sha256 recorded at training;
            a checkpoint without the record needs ``start`` given explicitly).
    """
    from medseg.segment.train import initialise

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"interpolation weight {alpha} is not in (0, 1)")
    data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = from_dict(TrainingConfig, data["config"])
    if not config.train.init_from:
        raise ValueError(f"{checkpoint}: not fine-tuned (train.init_from is empty): nothing to interpolate with")
    path = Path(start if start is not None else config.train.init_from)
    if not path.exists():
        raise ValueError(f"{checkpoint}: its starting file {path} does not exist")
    actual, recorded = sha256_file(path), data.get("init_sha256")
    if recorded and recorded != actual:
        raise ValueError(f"{path} (sha256 {actual[:12]}...) is not the file {checkpoint} started from "
                         f"({recorded[:12]}...): pass that file as the start")
    if not recorded and start is None:
        raise ValueError(f"{checkpoint} does not record its starting file's sha256: pass the file it "
                         "started from explicitly")
    model = build_model(config.model, config.data.image_size)
    initialise(model, path, freeze_batch_norm=config.train.freeze_batch_norm)
    start_state = model.state_dict()
    weights = {key: ((1 - alpha) * start_state[key].double() + alpha * value.double()).to(value.dtype)
               if value.is_floating_point() else value for key, value in data["model"].items()}
    return {"model": weights, "config": data["config"], "epoch": data.get("epoch"), "val_dice": None,
            "interpolated": {"checkpoint": str(checkpoint), "start": str(path), "start_sha256": actual,
                             "alpha": alpha, "learning_rate": config.train.learning_rate,
                             "epochs": data.get("epoch")}}


def export_onnx(checkpoint: str | Path | Sequence[str | Path], out_dir: str | Path, *,
                name: str = "cc_attention_unet", validation: dict | None = None,
                interpolate: float | None = None, start: str | Path | None = None) -> tuple[Path, Path, float]:
    """Write ``name.onnx`` + ``name.json``; returns (onnx, contract, max |ORT - torch|).

    ``checkpoint``: a training checkpoint, or several whose weights are averaged
    (:func:`average_checkpoints`; the contract's ``training.data`` then says so). ``interpolate``:
    one fine-tuned checkpoint's weight against its start's (:func:`interpolate_with_start`).

    ``validation``: the contract's validation block (the ``validation`` entry of an evaluation
    JSON written by ``pipelines/evaluate_cc.py`` or ``pipelines/evaluate_skullstrip.py``); without
    it the block records the checkpoint's validation Dice.

    Raises:
        ModelError: the contract written would not load (e.g. a validation block with unknown keys).
    """
    import onnx
    import onnxruntime as ort

    if interpolate is not None:
        if not isinstance(checkpoint, (str, Path)):
            raise ValueError("interpolation takes one fine-tuned checkpoint")
        data = interpolate_with_start(checkpoint, interpolate, start)
    elif isinstance(checkpoint, (str, Path)):
        data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    else:
        data = average_checkpoints(list(checkpoint))
    config = from_dict(TrainingConfig, data["config"])
    target = TARGETS[config.data.target]
    size = config.data.image_size
    model = build_model(config.model, size)
    model.load_state_dict(data["model"])
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    dynamic = config.model.name == "attention_unet"
    example = torch.randn(2, 1, size, size)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    with atomic_path(onnx_path, suffix=".onnx") as temp:
        torch.onnx.export(model, (example,), str(temp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=OPSET,
                          dynamo=False)
        proto = onnx.load(str(temp))
        for key, value in {"medseg_contract": f"{name}.json", "medseg_contract_version": CONTRACT_VERSION,
                           "medseg_version": __version__}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(temp))

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    max_diff = 0.0
    shapes = [(1, size, size), (3, size, size)] + ([(2, size + 64, size - 32)] if dynamic else [])
    for batch, h, w in shapes:
        x = rng.normal(size=(batch, 1, h, w)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        max_diff = max(max_diff, float(np.max(np.abs(got - expected))))

    contract = {
        "contract_version": CONTRACT_VERSION,
        "name": name,
        "task": target["task"],
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "opset": OPSET,
        "framework": {"medseg": __version__, "torch": torch.__version__, "onnx": onnx.__version__},
        "git_commit": _git_commit(),
        "input": {
            "name": INPUT_NAME, "dtype": "float32", "layout": "NCHW",
            "shape": ["batch", 1, "height" if dynamic else size, "width" if dynamic else size],
            "default_size": [size, size],
            "size_multiple": size_multiple(config.model),
            "spacing_mm": config.data.spacing_mm,
            "orientation": "rows run superior->inferior, columns anterior->posterior (patient), "
                           "square pixels; the plane is sagittal: its normal the slice normal "
                           "towards +L, its posterior axis the patient's posterior projected into "
                           "the plane, its inferior axis posterior x normal "
                           "(docs/onnx-integration.md, step 4)",
            "crop": {
                "method": target["crop"],
                "centre_column": "mean column of the head foreground",
                "centre_row_mm_below_head_top": CROP_TOP_TO_CENTRE_MM,
                "outside": 0.0,
            },
            "normalization": NORMALIZATION,
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", config.model.out_channels,
                                                                      "height", "width"],
                   "activation": f"none (logits); softmax over channel 1 gives P({target['label']})",
                   "labels": {"0": "background", "1": target["label"]},
                   "threshold": THRESHOLD},
        "model": asdict(config.model),
        "training": {
            "data": f"{target['data']}, "
                    f"train {list(config.data.train_subjects)}, validation {list(config.data.val_subjects)}"
                    + _weights_note(data),
            "augmentation": asdict(config.augment),
            "epochs": data.get("epoch"),
            "label_definition": target["label_definition"],
        },
        "validation": validation or {"val_dice_mean": data.get("val_dice")},
        "parity": {"max_abs_diff_ort_vs_torch": max_diff, "tested_shapes": [list(s) for s in shapes]},
    }
    checked = ModelContract.from_dict(contract, where=f"{name}.json (exported)")
    contract_path = write_text_atomic(out_dir / f"{name}.json", checked.to_json())
    return onnx_path, contract_path, max_diff


def export_fp16_variant(contract_path: str | Path, *, samples: np.ndarray | None = None) -> dict:
    """Write ``<name>.fp16.onnx`` beside an exported model (float16 weights and activations,
    float32 inputs and outputs: onnxconverter-common, ``keep_io_types``) and list it under
    ``variants.fp16`` in the contract with its measured difference from the fp32 model.

    ``samples`` (N, 1, H, W) are the inputs compared (default: random normal planes); the entry
    records the largest logit difference and the share of pixels whose label changes."""
    import onnx
    import onnxruntime as ort
    from onnxconverter_common import float16

    contract_path = Path(contract_path)
    contract = load_contract(contract_path)
    source = contract_path.parent / contract.file
    target = source.with_name(source.stem + ".fp16.onnx")
    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    with atomic_path(target, suffix=".onnx") as temp:
        onnx.save(model, str(temp))
    if samples is None:
        size = contract.input.default_size
        samples = np.random.default_rng(0).normal(size=(4, 1, *size)).astype(np.float32)
    providers = ["CPUExecutionProvider"]
    feed = {contract.input.name: samples}
    full = ort.InferenceSession(str(source), providers=providers).run(None, feed)[0]
    half = ort.InferenceSession(str(target), providers=providers).run(None, feed)[0]
    variant = Variant(file=target.name, sha256=sha256(target),
                      precision="float16 weights and activations; float32 input and output",
                      max_abs_logit_diff_vs_fp32=float(np.max(np.abs(full - half))),
                      label_change_fraction_vs_fp32=float(np.mean(full.argmax(1) != half.argmax(1))),
                      compared_inputs=tuple(samples.shape))
    updated = dataclasses.replace(contract, variants=dataclasses.replace(contract.variants, fp16=variant))
    write_text_atomic(contract_path, updated.to_json())
    return updated.to_dict()["variants"]["fp16"]
