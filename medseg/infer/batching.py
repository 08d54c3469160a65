"""Batching planes from several studies into one onnxruntime call (dynamic batching).

With ``medseg run --jobs N`` several studies are in flight at once, each in its own worker
thread. Their network calls go through one :class:`DynamicBatcher` per model: the first request
opens a batch, requests arriving within ``max_wait_ms`` (or until ``max_batch`` planes are
queued) join it, and one ``session.run`` serves them all; each caller gets its own rows back.
On a GPU this turns many 5-15-plane calls into a few large ones; on a CPU it changes little.
This is the scheme of inference servers (Triton's dynamic batcher); onnxruntime itself only runs
what one caller hands it.

The batcher is a :class:`~medseg.infer.runtime.Predictor` like the runtime it wraps, so the
segmenters take either.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from medseg.infer.contract import ModelContract
from medseg.infer.runtime import Predictor


@dataclass
class _Request:
    batch: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    calls: int = 0  # session calls made
    requests: int = 0  # caller requests served
    planes: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"session_calls": self.calls, "requests": self.requests, "planes": self.planes,
                "mean_planes_per_call": round(self.planes / self.calls, 2) if self.calls else 0.0}


class DynamicBatcher:
    """Thread-safe ``probabilities(batch)`` that merges concurrent callers' planes.

    One dispatcher thread (a daemon, started on first use) owns the session calls; callers wait
    on their own request. ``callers`` (the number of threads that may call at once) lets a batch
    go as soon as every caller has a request queued instead of waiting out ``max_wait_ms``.
    """

    def __init__(self, runtime: Predictor, *, max_batch: int = 64, max_wait_ms: float = 20.0,
                 callers: int | None = None):
        self.runtime, self.max_batch, self.max_wait = runtime, max_batch, max_wait_ms / 1000.0
        self.callers = callers
        self.stats = BatchStats()
        self._pending: list[_Request] = []
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def contract(self) -> ModelContract:
        return self.runtime.contract

    @property
    def providers(self) -> list[str]:
        return self.runtime.providers

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """P(label 1) per plane, (N, H, W), for planes from any thread."""
        request = _Request(np.ascontiguousarray(batch, dtype=np.float32))
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, name="medseg-batcher", daemon=True)
                self._thread.start()
            self._pending.append(request)
            self._condition.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None  # _run sets the result or the error before done
        return request.result

    def _ready(self) -> bool:
        planes = sum(len(r.batch) for r in self._pending)
        return planes >= self.max_batch or (self.callers is not None and len(self._pending) >= self.callers)

    def _dispatch(self) -> None:
        while True:
            with self._condition:
                while not self._pending:
                    self._condition.wait()
                deadline = time.monotonic() + self.max_wait
                while not self._ready():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._condition.wait(remaining)
                taken: list[_Request] = []
                size = 0
                for request in self._pending:
                    if taken and size + len(request.batch) > self.max_batch:
                        break
                    taken.append(request)
                    size += len(request.batch)
                del self._pending[:len(taken)]
            self._run(taken)

    def _run(self, taken: list[_Request]) -> None:
        groups: dict[tuple[int, ...], list[_Request]] = {}
        for request in taken:  # one call per plane size
            groups.setdefault(request.batch.shape[1:], []).append(request)
        for requests in groups.values():
            try:
                out = self.runtime.probabilities(np.concatenate([r.batch for r in requests]))
                start = 0
                for r in requests:
                    r.result = out[start:start + len(r.batch)]
                    start += len(r.batch)
            except Exception as exc:  # every caller of the failed call gets the error
                for r in requests:
                    r.error = exc
            self.stats.calls += 1
            self.stats.requests += len(requests)
            self.stats.planes += sum(len(r.batch) for r in requests)
            for r in requests:
                r.done.set()
