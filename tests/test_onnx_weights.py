"""An exported ONNX network loaded back into its torch module (fine-tuning a shipped model):
the rebuilt module computes what the file computes, frozen batch norms keep it so in training
mode, and a file of another architecture is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.config import to_dict
from medseg.segment.export import export_onnx
from medseg.segment.nets import ModelConfig, build_model
from medseg.segment.onnx_weights import freeze_batch_norm, load_onnx_weights, module_path
from medseg.segment.train import DataConfig, TrainingConfig, initialise

TINY = ModelConfig(channels=(4, 8), strides=(2,))


def _exported(tmp_path, model_config=TINY):
    """A tiny network whose batch norms hold non-trivial statistics and affine parameters (a few
    training-mode passes and perturbed weights), exported through medseg's own export."""
    torch.manual_seed(0)
    model = build_model(model_config, 64)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 1, 64, 64) * 3 + 1)
    config = TrainingConfig(data=DataConfig(root=str(tmp_path), train_subjects=("a",), val_subjects=("b",),
                                            image_size=64, spacing_mm=4.0), model=model_config)
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(config), "epoch": 0, "val_dice": 0.0}, checkpoint)
    onnx_path, _, _ = export_onnx(checkpoint, tmp_path / "models", name="tiny")
    return model.eval(), onnx_path


def test_module_path_follows_the_onnx_scope():
    assert module_path("/model/model.0/conv/conv.0/conv/Conv") == "model.0.conv.0.conv"
    assert module_path("/model/model.1/submodule/submodule.1/merge/conv/Conv") == "model.1.submodule.1.merge.conv"
    assert module_path("/model/model.1/attention/W_g/W_g.0/conv/Conv") == "model.1.attention.W_g.0.conv"
    with pytest.raises(ValueError, match="no module scope"):
        module_path("Conv_12")


def test_the_rebuilt_module_computes_what_the_exported_file_computes(tmp_path):
    original, onnx_path = _exported(tmp_path)
    torch.manual_seed(1)
    rebuilt = build_model(TINY, 64)  # other random weights
    load_onnx_weights(rebuilt, onnx_path)
    rebuilt.eval()
    image = torch.randn(2, 1, 64, 80)
    with torch.no_grad():
        assert float((rebuilt(image) - original(image)).abs().max()) < 1e-4
        # in training mode the batch norms would use batch statistics and undo the folding;
        # frozen, the module still computes the exported network
        rebuilt.train()
        assert freeze_batch_norm(rebuilt) > 0
        assert float((rebuilt(image) - original(image)).abs().max()) < 1e-4


def test_a_training_step_with_frozen_batch_norms_changes_the_convolutions_only(tmp_path):
    _, onnx_path = _exported(tmp_path)
    model = build_model(TINY, 64)
    load_onnx_weights(model, onnx_path)
    model.train()
    freeze_batch_norm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(torch.randn(2, 1, 64, 64)).square().mean().backward()
    optimiser.step()
    after = model.state_dict()
    norms = [k for k in before if ".adn.N." in k or k.split(".")[-1] in ("running_mean", "running_var")]
    assert norms and all(torch.equal(before[k], after[k]) for k in norms)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("conv.weight"))


def test_a_file_of_another_architecture_is_refused(tmp_path):
    _, onnx_path = _exported(tmp_path)
    wider = build_model(ModelConfig(channels=(8, 16), strides=(2,)), 64)
    with pytest.raises(ValueError, match="values, the model"):
        load_onnx_weights(wider, onnx_path)
    deeper = build_model(ModelConfig(channels=(4, 8, 16), strides=(2, 2)), 64)
    with pytest.raises(ValueError, match="not the same architecture"):
        load_onnx_weights(deeper, onnx_path)


def test_training_from_an_onnx_file_requires_frozen_batch_norms(tmp_path):
    _, onnx_path = _exported(tmp_path)
    model = build_model(TINY, 64)
    with pytest.raises(ValueError, match="freeze_batch_norm: true"):
        initialise(model, onnx_path)
    initialise(model, onnx_path, freeze_batch_norm=True)
    session_input = np.zeros((1, 1, 64, 64), np.float32)
    model.eval()
    with torch.no_grad():
        assert model(torch.from_numpy(session_input)).shape == (1, 2, 64, 64)
