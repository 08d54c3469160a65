"""Inference: the model contract (``model.json``), onnxruntime sessions created once per process
from it, batching across callers, and the network grid and plane normalisation shared by
training and inference."""

from medseg.infer.contract import ModelContract, ModelError, load_contract
from medseg.infer.runtime import ModelRuntime, Predictor, load_runtime

__all__ = ["ModelContract", "ModelError", "ModelRuntime", "Predictor", "load_contract", "load_runtime"]
