"""Weights of an exported ONNX network loaded back into its torch module (to fine-tune a shipped
model whose training checkpoint is gone).

Export (``torch.onnx.export``, constant folding on) folds each batch normalisation that follows a
convolution into that convolution's weight and bias, renames the folded tensors (``onnx::Conv_313``)
and keeps the rest under their state-dict names. Node names keep the module scope
(``/model/model.0/conv/conv.0/conv/Conv`` is module ``model.0.conv.0.conv``), so each folded
tensor goes back to the module whose node uses it. The folded batch normalisations become the
identity (weight 1, bias 0, mean 0, variance 1 - eps): in evaluation mode the rebuilt module is the
exported network, which :func:`load_onnx_weights` checks by running both on the same input.

Training mode would normalise with batch statistics and undo the folding, so a module rebuilt
this way is fine-tuned with its batch normalisations frozen (:func:`freeze_batch_norm`), as is
usual when fine-tuning with small batches. No library inverts an ONNX export into a MONAI module;
this is written here for that reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-3  # max |logit difference| between the rebuilt module and the ONNX file


def module_path(node_name: str) -> str:
    """The module of an ONNX node from its scope name: ``/model/model.1/submodule/merge/conv/Conv``
    -> ``model.1.submodule.merge.conv`` (a segment that extends the previous one by ``.N`` is the
    N-th child of a container)."""
    segments = [s for s in node_name.split("/") if s][:-1]
    if not segments:
        raise ValueError(f"ONNX node {node_name!r} has no module scope")
    path = segments[0]
    previous = segments[0]
    for segment in segments[1:]:
        path += segment[len(previous):] if segment.startswith(previous + ".") else "." + segment
        previous = segment
    return path


def _is_batch_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def load_onnx_weights(model: torch.nn.Module, onnx_path: str | Path) -> None:
    """Set ``model``'s weights from the ONNX file it was exported to (same architecture).

    Raises ``ValueError`` when a parameter cannot be found or has another shape, or when the
    rebuilt module and the ONNX file disagree on a test input."""
    import onnx
    from onnx import numpy_helper

    onnx_path = Path(onnx_path)
    proto = onnx.load(str(onnx_path))
    tensors = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    state = model.state_dict()
    found: dict[str, np.ndarray] = {k: v for k, v in tensors.items() if k in state}
    folded_into: set[str] = set()
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "PRelu"):
            continue
        weights = [name for name in node.input[1:] if name in tensors and name not in state]
        if not weights:
            continue
        module = module_path(node.name)
        for name, kind in zip(weights, ("weight", "bias"), strict=False):
            key = f"{module}.{kind}"
            if key not in state:
                raise ValueError(f"{onnx_path}: node {node.name} maps to {key}, which the model lacks: "
                                 "not the same architecture")
            found[key] = tensors[name]
        if node.op_type != "PRelu":
            folded_into.add(module)
    identity = 0
    for name, module in model.named_modules():
        if not _is_batch_norm(module) or f"{name}.weight" in found:
            continue
        # a batch norm without its own tensors in the file was folded into the convolution before it
        found[f"{name}.weight"] = np.ones(module.num_features, np.float32)
        found[f"{name}.bias"] = np.zeros(module.num_features, np.float32)
        found[f"{name}.running_mean"] = np.zeros(module.num_features, np.float32)
        found[f"{name}.running_var"] = np.full(module.num_features, 1.0 - module.eps, np.float32)
        identity += 1
    loaded: dict[str, torch.Tensor] = {}
    for key, value in found.items():
        array = np.asarray(value)
        if array.size != state[key].numel():
            raise ValueError(f"{onnx_path}: {key} has {array.size} values, the model {state[key].numel()}")
        # ONNX may store a parameter in another but equal-sized shape (PRelu's (1, 1, 1) for (1,))
        loaded[key] = torch.from_numpy(array.copy()).reshape(state[key].shape)
    load_matching_weights(model, loaded, onnx_path)
    difference = _parity(model, onnx_path, proto)
    if difference > PARITY_TOLERANCE:
        raise ValueError(f"{onnx_path}: the rebuilt module differs from the file by {difference:.2e} "
                         f"(> {PARITY_TOLERANCE:g}) in its logits")
    log.info("weights from %s: %d convolutions with folded batch norms, %d batch norms set to the "
             "identity; parity %.1e", onnx_path, len(folded_into), identity, difference)


def load_matching_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``weights`` into ``model``: every parameter must be there with the model's shape
    (``ValueError`` naming ``source`` otherwise)."""
    state = model.state_dict()
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{source}: {len(missing)} parameters not found (e.g. {missing[:3]}): "
                         "not the same architecture")
    for key, value in state.items():
        if key in weights:
            if tuple(weights[key].shape) != tuple(value.shape):
                raise ValueError(f"{source}: {key} has shape {tuple(weights[key].shape)}, "
                                 f"the model {tuple(value.shape)}")
            state[key] = weights[key].to(value.dtype)
    model.load_state_dict(state)


def _parity(model: torch.nn.Module, onnx_path: Path, proto) -> float:
    import onnxruntime as ort

    shape = [d.dim_value or 64 for d in proto.graph.input[0].type.tensor_type.shape.dim]
    shape[0] = 1
    example = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = model(example).numpy()
    model.train(was_training)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    return float(np.abs(got - expected).max())


def freeze_batch_norm(model: torch.nn.Module) -> int:
    """Put every batch normalisation in evaluation mode with its parameters frozen; returns how
    many. Call after each ``model.train()``."""
    count = 0
    for module in model.modules():
        if _is_batch_norm(module):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            count += 1
    return count
