"""The ``model.json`` contract: strict typed loading, and inference taking every value from it;
``pipelines/export.py`` writes a contract that loads, matches its model file and runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from medseg.infer.contract import ModelContract, ModelError, check_model_file, load_contract
from tests.conftest import REPO

SHIPPED = ["cc_attention_unet", "skullstrip_attention_unet"]


def shipped(name: str = "cc_attention_unet") -> dict:
    return json.loads((REPO / "models" / f"{name}.json").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_contracts_load_and_write_back_the_same_json(name):
    contract = load_contract(REPO / "models" / f"{name}.json")
    assert contract.to_dict() == shipped(name)
    assert contract.input.size == contract.input.default_size[0] and contract.input.size_multiple == 16
    assert contract.input.normalization.percentiles == (1.0, 99.0)
    assert contract.input.crop.centre_row_mm_below_head_top == 105.0
    assert contract.output.threshold == 0.5 and contract.label in ("corpus_callosum", "brain")
    assert check_model_file(contract, REPO / "models", "fp16").name == f"{name}.fp16.onnx"
    with pytest.raises(dataclasses.FrozenInstanceError):
        contract.input.spacing_mm = 2.0


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["input"].update(spacing=1.0), r"input: unknown key\(s\) \['spacing'\]"),
    (lambda c: c["input"]["normalization"].update(lower_percentile="one"), "lower_percentile"),
    (lambda c: c["input"].update(layout="NHWC"), r"input.layout: 'NHWC' is not one of \['NCHW'\]"),
    (lambda c: c["output"].pop("threshold"), "threshold"),
    (lambda c: c["output"].update(threshold=1.5), "threshold 1.5 is not a probability"),
    (lambda c: c["validation"].update(dice=0.9), r"validation: unknown key\(s\) \['dice'\]"),
    (lambda c: c.update(contract_version="2.0"), "contract_version 2.0 is not supported"),
    (lambda c: c["training"].update(label_definition="cc"), r"label_definition: 'cc' is not one of"),
])
def test_a_contract_that_does_not_match_the_schema_is_refused_naming_the_key(tmp_path, edit, message):
    data = shipped()
    edit(data)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        load_contract(path)


def test_a_model_file_that_is_not_the_contracts_is_refused(tmp_path):
    contract = load_contract(REPO / "models" / "cc_attention_unet.json")
    (tmp_path / contract.file).write_bytes(b"not a model")
    with pytest.raises(ModelError, match="differs from the contract's"):
        check_model_file(contract, tmp_path)
    with pytest.raises(ModelError, match="no fp8 variant"):
        check_model_file(contract, tmp_path, "fp8")


class RecordingPredictor:
    """A Predictor with a given contract: P = 0.6 everywhere; records the batches it is given."""

    def __init__(self, contract: ModelContract):
        self.contract, self.providers, self.batches = contract, ["none"], []

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        return np.full((len(batch), *batch.shape[2:]), 0.6, np.float32)


def with_values(*, threshold=None, percentiles=None, top_to_centre=None) -> ModelContract:
    contract = load_contract(REPO / "models" / "cc_attention_unet.json")
    inp, out = contract.input, contract.output
    if percentiles:
        inp = dataclasses.replace(inp, normalization=dataclasses.replace(
            inp.normalization, lower_percentile=percentiles[0], upper_percentile=percentiles[1]))
    if top_to_centre:
        inp = dataclasses.replace(inp, crop=dataclasses.replace(inp.crop, centre_row_mm_below_head_top=top_to_centre))
    if threshold:
        out = dataclasses.replace(out, threshold=threshold)
    return dataclasses.replace(contract, input=inp, output=out)


def test_inference_takes_threshold_normalisation_and_crop_from_the_contract():
    from medseg.infer.normalize2d import normalize_slice
    from medseg.segment.evaluate import predict_masks
    from medseg.segment.infer import CCSegmenter
    from medseg.synth.phantom import HeadPhantom, phantom_volume, sagittal_affine

    image = np.random.default_rng(0).gamma(2.0, 50.0, (192, 192)).astype(np.float32)
    assert predict_masks(RecordingPredictor(with_values(threshold=0.5)), [image]).all()
    assert not predict_masks(RecordingPredictor(with_values(threshold=0.7)), [image]).any()
    predictor = RecordingPredictor(with_values(percentiles=(10.0, 90.0)))
    predict_masks(predictor, [image])
    assert np.array_equal(predictor.batches[0][0, 0], normalize_slice(image, (10.0, 90.0)))
    assert not np.allclose(predictor.batches[0][0, 0], normalize_slice(image))

    shape = (64, 64, 5)
    volume, _ = phantom_volume(HeadPhantom(), shape, sagittal_affine(shape, (3.0, 3.0, 5.0)))
    head = np.asarray(volume.array) > 0.1 * np.asarray(volume.array).max()
    planes = {mm: CCSegmenter(RecordingPredictor(with_values(top_to_centre=mm))).slice_planes(volume, head, [2])[0]
              for mm in (105.0, 80.0)}
    row_dir = planes[105.0].y_vec / np.linalg.norm(planes[105.0].y_vec)
    assert np.allclose(planes[105.0].origin - planes[80.0].origin, 25.0 * row_dir, atol=1e-6)


def test_the_rule_based_cc_alone_step_follows_what_the_contract_says_the_network_was_trained_on():
    """A 1.0 contract (no label_definition) or "freesurfer": the network outlines FreeSurfer's
    label with the fornix, so the rule reduces it to the CC alone; "cc_alone": the network already
    does, and the rule is not run again. An explicit choice wins."""
    from medseg.segment.infer import CCSegmenter

    contract = load_contract(REPO / "models" / "cc_attention_unet.json")

    def trained_on(label):
        return RecordingPredictor(dataclasses.replace(
            contract, training=dataclasses.replace(contract.training, label_definition=label)))

    assert CCSegmenter(trained_on(None)).cc_alone and CCSegmenter(trained_on("freesurfer")).cc_alone
    assert not CCSegmenter(trained_on("cc_alone")).cc_alone
    assert CCSegmenter(trained_on("cc_alone"), cc_alone=True).cc_alone
    assert not CCSegmenter(trained_on(None), cc_alone=False).cc_alone
    image = np.random.default_rng(1).gamma(2.0, 50.0, (64, 64)).astype(np.float32)
    probability = np.full((64, 64), 0.9, np.float32)
    assert CCSegmenter(trained_on("cc_alone")).alone(image, probability) == (probability, None)


def test_both_segmenters_accept_a_batcher_as_predictor():
    from medseg.infer.batching import DynamicBatcher
    from medseg.preprocess.skullstrip import SkullStripper
    from medseg.segment.infer import CCSegmenter

    contract = with_values(threshold=0.3)
    batcher = DynamicBatcher(RecordingPredictor(contract))
    assert batcher.contract is contract and CCSegmenter(batcher).threshold == 0.3
    assert SkullStripper(batcher).threshold == 0.3 and SkullStripper(batcher).runtime is batcher


def _export_pipeline():
    spec = importlib.util.spec_from_file_location("export_pipeline", REPO / "pipelines" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_pipeline_writes_a_contract_that_loads_matches_and_runs(tmp_path):
    """A randomly initialised tiny model (no training) exported with an evaluation's validation
    block: the contract loads as a ModelContract, the sha256 values match, and onnxruntime and the
    segmenter run it."""
    import torch

    from medseg.config import to_dict
    from medseg.infer.runtime import load_runtime
    from medseg.segment.infer import CCSegmenter
    from medseg.segment.nets import ModelConfig, build_model
    from medseg.segment.train import DataConfig, TrainingConfig

    config = TrainingConfig(data=DataConfig(root=str(tmp_path), train_subjects=("a",), val_subjects=("b",),
                                            image_size=64, spacing_mm=4.0),
                            model=ModelConfig(channels=(4, 8), strides=(2,)))
    torch.manual_seed(0)
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": build_model(config.model, 64).state_dict(), "config": to_dict(config), "epoch": 0,
                "val_dice": 0.0}, checkpoint)
    validation = {"held_out_subjects": ["b"],
                  "midsagittal": [{"subject": "b", "dice": 0.1, "hd95_mm": 9.0, "label_area_mm2": 500.0}],
                  "evaluated_by": "pipelines/evaluate_cc.py"}
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"model": "tiny", "sha256": "0" * 64, "validation": validation}))
    out = tmp_path / "models"
    assert _export_pipeline().main(["--checkpoint", str(checkpoint), "--name", "tiny",
                                    "--evaluation", str(evaluation), "-o", str(out)]) == 0

    contract = load_contract(out / "tiny.json")
    assert contract.to_dict()["validation"] == validation
    assert contract.input.spacing_mm == 4.0 and contract.input.size == 64 and contract.output.threshold == 0.5
    assert contract.contract_version == "1.1" and contract.training.label_definition == "cc_alone"
    from medseg.io.atomic import sha256_file

    assert sha256_file(out / "tiny.onnx") == contract.sha256
    assert sha256_file(out / "tiny.fp16.onnx") == contract.variants.fp16.sha256
    runtime = load_runtime("tiny", models_dir=out)
    probabilities = runtime.probabilities(np.zeros((2, 1, 64, 64), np.float32))
    assert probabilities.shape == (2, 64, 64) and np.all((probabilities >= 0) & (probabilities <= 1))
    assert CCSegmenter(runtime).spacing == 4.0 and not CCSegmenter(runtime).cc_alone


def test_export_refuses_an_evaluation_of_another_model(tmp_path):
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"model": "skullstrip_attention_unet", "validation": {}}))
    with pytest.raises(ModelError, match="not 'cc_attention_unet'"):
        _export_pipeline().read_validation(evaluation, "cc_attention_unet")
    evaluation.write_text(json.dumps({"model": "cc_attention_unet"}))
    with pytest.raises(ModelError, match="no 'validation' entry"):
        _export_pipeline().read_validation(evaluation, "cc_attention_unet")
