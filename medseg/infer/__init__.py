"""ONNX Runtime inference: sessions created once per process from a model's contract."""

from medseg.infer.runtime import ModelRuntime, load_runtime

__all__ = ["ModelRuntime", "load_runtime"]
