"""One place that creates onnxruntime sessions from a shipped model and its ``model.json``.

Device choice: ``cpu``, ``cuda``, ``tensorrt`` or ``auto`` (TensorRT -> CUDA -> CPU, whichever
actually loads). The providers in use are read back from the session, never assumed.

Precision: ``fp32`` (the shipped model) or ``fp16``, the variant listed under ``variants`` in
``model.json`` (float16 weights and activations, float32 inputs and outputs, written by
:func:`medseg.segment.export.export_fp16_variant` with its measured difference from fp32).

On CUDA the session runs through IO binding: the input is copied to the device once, the output
is bound on the device and copied back once (no per-call reallocation by onnxruntime).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.errors import ModelError

log = logging.getLogger(__name__)
Device = Literal["auto", "cpu", "cuda", "tensorrt"]
Precision = Literal["fp32", "fp16"]
SUPPORTED_CONTRACT_MAJOR = "1"  # contract_version "1.x" is read by this medseg


def default_models_dir() -> Path:
    """Where the shipped models are: ``$MEDSEG_MODELS`` when set, else the package's own
    ``medseg/models`` (package data in wheels; a link to the repository's ``models/`` in a
    checkout)."""
    import os
    from importlib.resources import files

    override = os.environ.get("MEDSEG_MODELS")
    if override:
        return Path(override)
    return Path(str(files("medseg") / "models"))


def check_contract(contract: dict, onnx_path: Path, expected_sha256: str | None) -> None:
    """Refuse a contract of an unknown major version, or a model file whose sha256 differs from
    the one its contract records (a model swapped or damaged after export).

    Raises:
        ModelError: with the file and both values.
    """
    version = str(contract.get("contract_version", ""))
    if version.split(".")[0] != SUPPORTED_CONTRACT_MAJOR:
        raise ModelError(f"{onnx_path.name}: contract_version {version or 'missing'} is not supported "
                         f"(this medseg reads {SUPPORTED_CONTRACT_MAJOR}.x)")
    if not expected_sha256:
        raise ModelError(f"{onnx_path.name}: its contract records no sha256")
    from medseg.io.atomic import sha256_file

    actual = sha256_file(onnx_path)
    if actual != expected_sha256:
        raise ModelError(f"{onnx_path}: sha256 {actual[:12]}... differs from the contract's "
                         f"{expected_sha256[:12]}...: the model file is not the one the contract describes")

_CUDA = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})


def _providers(device: str, precision: str) -> list:
    """Providers wanted for a device, in order of preference. TensorRT builds its engines in fp16
    when asked, and caches them (building takes minutes) under $MEDSEG_CACHE or ~/.cache/medseg."""
    import os

    cache = Path(os.environ.get("MEDSEG_CACHE", Path.home() / ".cache" / "medseg")) / "tensorrt"
    tensorrt = ("TensorrtExecutionProvider", {"trt_fp16_enable": precision == "fp16",
                                              "trt_engine_cache_enable": True,
                                              "trt_engine_cache_path": str(cache)})
    return {"cpu": ["CPUExecutionProvider"],
            "cuda": [_CUDA, "CPUExecutionProvider"],
            "tensorrt": [tensorrt, _CUDA, "CPUExecutionProvider"],
            "auto": [tensorrt, _CUDA, "CPUExecutionProvider"]}[device]


@dataclass
class ModelRuntime:
    contract: dict
    session: object
    providers: list[str]
    path: Path
    precision: str = "fp32"
    max_batch: int = 16  # planes per session call
    io_binding: bool = False  # run through IO binding (set for CUDA sessions)

    @property
    def input_name(self) -> str:
        return self.contract["input"]["name"]

    @property
    def output_name(self) -> str:
        return self.contract["output"]["name"]

    def run(self, batch: np.ndarray, max_batch: int | None = None) -> np.ndarray:
        """Logits for a float32 NCHW batch (split into chunks of ``max_batch``)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = max_batch or self.max_batch
        call = self._run_bound if self.io_binding else self._run_plain
        outputs = [call(np.ascontiguousarray(batch[i:i + step])) for i in range(0, len(batch), step)]
        return np.concatenate(outputs) if outputs else np.zeros((0,))

    def _run_plain(self, chunk: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: chunk})[0]

    def _run_bound(self, chunk: np.ndarray) -> np.ndarray:
        """One call through IO binding, on the device of the session's first provider."""
        import onnxruntime as ort

        device = "cuda" if self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(chunk, device, 0))
        binding.bind_output(self.output_name, device, 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

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


_SESSIONS: dict[tuple, ModelRuntime] = {}
_LOCK = threading.Lock()


def load_runtime(name: str = "cc_attention_unet", *, models_dir: Path | None = None,
                 device: Device = "cpu", threads: int = 0, precision: Precision = "fp32") -> ModelRuntime:
    """The runtime for a shipped model (cached: created once per process, device and precision)."""
    import onnxruntime as ort

    folder = Path(models_dir) if models_dir else default_models_dir()
    contract_path = folder / f"{name}.json"
    key = (str(contract_path.resolve()), device, threads, precision)
    with _LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
        if not contract_path.exists():
            raise ModelError(f"model contract {contract_path} not found (models ship in the package's "
                             "models/; set MEDSEG_MODELS or --models-dir to use others)")
        try:
            contract = json.loads(contract_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"model contract {contract_path} cannot be read ({exc})") from exc
        if precision == "fp32":
            onnx_path, sha = folder / contract["file"], contract.get("sha256")
        elif precision in contract.get("variants", {}):
            variant = contract["variants"][precision]
            onnx_path, sha = folder / variant["file"], variant.get("sha256")
        else:
            raise ModelError(f"model {name} has no {precision} variant (variants: "
                             f"{sorted(contract.get('variants', {})) or 'none'})")
        if not onnx_path.exists():
            raise ModelError(f"model file {onnx_path} not found")
        check_contract(contract, onnx_path, sha)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        available = set(ort.get_available_providers())
        wanted = _providers(device, precision)
        if device == "auto":
            wanted = [p for p in wanted if (p[0] if isinstance(p, tuple) else p) in available]
        try:
            session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=wanted)
        except Exception as exc:  # provider libraries missing: fall back to CPU, say so
            if device in ("cpu",):
                raise
            log.warning("could not start %s providers (%s); using CPU", device, exc)
            session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        providers = session.get_providers()
        on_gpu = providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        runtime = ModelRuntime(contract, session, providers, onnx_path, precision=precision,
                               max_batch=64 if on_gpu else 16, io_binding=on_gpu)
        runtime.warm_up()
        _SESSIONS[key] = runtime
        return runtime
