"""One place that creates onnxruntime sessions from a shipped model and its ``model.json``.

Device choice: ``cpu``, ``cuda``, ``tensorrt`` or ``auto`` (TensorRT -> CUDA -> CPU, whichever
actually loads). The providers in use are read back from the session, never assumed.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.errors import MedsegError

log = logging.getLogger(__name__)
Device = Literal["auto", "cpu", "cuda", "tensorrt"]
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider",
                 ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"],
}


class ModelError(MedsegError):
    """A shipped model or its contract is missing or does not match."""

    stage = "model"


@dataclass
class ModelRuntime:
    contract: dict
    session: object
    providers: list[str]
    path: Path

    @property
    def input_name(self) -> str:
        return self.contract["input"]["name"]

    @property
    def output_name(self) -> str:
        return self.contract["output"]["name"]

    def run(self, batch: np.ndarray, max_batch: int = 16) -> np.ndarray:
        """Logits for a float32 NCHW batch (split into chunks of ``max_batch``)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        outputs = [self.session.run([self.output_name], {self.input_name: batch[i:i + max_batch]})[0]
                   for i in range(0, len(batch), max_batch)]
        return np.concatenate(outputs) if outputs else np.zeros((0,))

    def warm_up(self) -> None:
        """One small run, so that kernel selection and allocation happen before timed work."""
        size = int(self.contract["input"]["default_size"][0])
        self.run(np.zeros((1, 1, size, size), np.float32))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probability of label 1 for each image, shape (N, H, W)."""
        logits = self.run(batch)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp[:, 1] / exp.sum(axis=1)


_SESSIONS: dict[tuple[str, str, int], ModelRuntime] = {}
_LOCK = threading.Lock()


def load_runtime(name: str = "cc_attention_unet", *, models_dir: Path | None = None,
                 device: Device = "cpu", threads: int = 0) -> ModelRuntime:
    """The runtime for a shipped model (cached: created once per process and device)."""
    import onnxruntime as ort

    folder = Path(models_dir) if models_dir else MODELS_DIR
    contract_path = folder / f"{name}.json"
    key = (str(contract_path.resolve()), device, threads)
    with _LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
        if not contract_path.exists():
            raise ModelError(f"model contract {contract_path} not found (models ship in models/)")
        contract = json.loads(contract_path.read_text())
        onnx_path = folder / contract["file"]
        if not onnx_path.exists():
            raise ModelError(f"model file {onnx_path} not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        available = set(ort.get_available_providers())
        if device == "auto":
            wanted = [p for p in _PROVIDERS["tensorrt"]
                      if (p[0] if isinstance(p, tuple) else p) in available]
        else:
            wanted = _PROVIDERS[device]
        try:
            session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=wanted)
        except Exception as exc:  # provider libraries missing: fall back to CPU, say so
            if device in ("cpu",):
                raise
            log.warning("could not start %s providers (%s); using CPU", device, exc)
            session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        runtime = ModelRuntime(contract, session, session.get_providers(), onnx_path)
        runtime.warm_up()
        _SESSIONS[key] = runtime
        return runtime
