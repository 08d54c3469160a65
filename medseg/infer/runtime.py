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

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from medseg.errors import ModelError  # noqa: F401  (its former home: importers keep working)
from medseg.infer.contract import ModelContract, check_model_file, load_contract

log = logging.getLogger(__name__)
Device = Literal["auto", "cpu", "cuda", "tensorrt"]
Precision = Literal["fp32", "fp16"]
# An onnxruntime execution provider: its name, or (name, provider options).
Provider = str | tuple[str, dict[str, Any]]


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


_CUDA: Provider = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})


def _providers(device: str, precision: str) -> list[Provider]:
    """Providers wanted for a device, in order of preference. TensorRT builds its engines in fp16
    when asked, and caches them (building takes minutes) under $MEDSEG_CACHE or ~/.cache/medseg."""
    import os

    cache = Path(os.environ.get("MEDSEG_CACHE", Path.home() / ".cache" / "medseg")) / "tensorrt"
    tensorrt: Provider = ("TensorrtExecutionProvider", {"trt_fp16_enable": precision == "fp16",
                                                        "trt_engine_cache_enable": True,
                                                        "trt_engine_cache_path": str(cache)})
    choices: dict[str, list[Provider]] = {"cpu": ["CPUExecutionProvider"],
                                          "cuda": [_CUDA, "CPUExecutionProvider"],
                                          "tensorrt": [tensorrt, _CUDA, "CPUExecutionProvider"],
                                          "auto": [tensorrt, _CUDA, "CPUExecutionProvider"]}
    return choices[device]


class Predictor(Protocol):
    """What the segmenters run planes through: a :class:`ModelRuntime` (one session) or a
    :class:`~medseg.infer.batching.DynamicBatcher` (several callers' planes in one session call)."""

    @property
    def contract(self) -> ModelContract: ...

    @property
    def providers(self) -> list[str]: ...

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """P(label 1) of each float32 (N, 1, H, W) plane, shape (N, H, W)."""
        ...


class PlaneModel:
    """A network run on 2D planes (the CC segmenter, the skull stripper): its :class:`Predictor`
    and the values of its contract that inference uses, read here once for both, never copied
    into code: the grid (size, spacing), the crop's centre below the top of the head, the
    normalisation percentiles and outside value, the probability threshold."""

    def __init__(self, runtime: Predictor | None, name: str, device: Device, precision: Precision):
        self.runtime: Predictor = runtime or load_runtime(name, device=device, precision=precision)
        contract = self.runtime.contract
        self.size = contract.input.size
        self.spacing = float(contract.input.spacing_mm)
        self.top_to_centre_mm = float(contract.input.crop.centre_row_mm_below_head_top)
        self.percentiles = contract.input.normalization.percentiles
        self.outside = float(contract.input.normalization.outside_image_value)
        self.threshold = float(contract.output.threshold)


@dataclass
class ModelRuntime:
    """One onnxruntime session of a shipped model; implements :class:`Predictor`."""

    contract: ModelContract
    session: Any  # an onnxruntime.InferenceSession (onnxruntime ships no type information)
    providers: list[str]
    path: Path
    precision: str = "fp32"
    max_batch: int = 16  # planes per session call
    io_binding: bool = False  # run through IO binding (set for CUDA sessions)

    @property
    def input_name(self) -> str:
        return self.contract.input.name

    @property
    def output_name(self) -> str:
        return self.contract.output.name

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
        size = self.contract.input.size
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
    """The runtime for a shipped model (cached: created once per process, device and precision).

    Raises:
        ModelError: the contract is missing or not one this medseg reads, the model file (or the
            ``precision`` variant) is missing, or its sha256 is not the contract's.
    """
    import onnxruntime as ort

    folder = Path(models_dir) if models_dir else default_models_dir()
    contract_path = folder / f"{name}.json"
    key = (str(contract_path.resolve()), device, threads, precision)
    with _LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
        contract = load_contract(contract_path)
        onnx_path = check_model_file(contract, folder, precision)
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
