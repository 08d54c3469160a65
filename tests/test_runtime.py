"""The inference runtime: dynamic batching across callers, IO binding, the fp16 variant."""

import threading
import time

import numpy as np
import pytest

from medseg.infer.batching import DynamicBatcher
from medseg.infer.runtime import ModelError, load_runtime
from tests.conftest import REPO

needs_model = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                 reason="no shipped CC model")


class FakeRuntime:
    """Doubles its input; records the size of every call."""

    contract = {"name": "fake"}
    providers = ["CPUExecutionProvider"]

    def __init__(self, fail_on: int | None = None):
        self.calls, self.fail_on = [], fail_on

    def probabilities(self, batch):
        self.calls.append(len(batch))
        time.sleep(0.01)
        if self.fail_on is not None and (batch[:, 0, 0, 0] == self.fail_on).any():
            raise RuntimeError("device lost")
        return batch[:, 0] * 2


def test_batcher_merges_concurrent_callers_and_returns_each_its_rows():
    runtime = FakeRuntime()
    batcher = DynamicBatcher(runtime, max_batch=64, max_wait_ms=200, callers=6)
    results, barrier = {}, threading.Barrier(6)

    def caller(k):
        batch = np.full((k + 1, 1, 4, 4), float(k), np.float32)
        barrier.wait()
        results[k] = batcher.probabilities(batch)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(6):
        assert results[k].shape == (k + 1, 4, 4) and np.all(results[k] == 2.0 * k)
    assert sum(runtime.calls) == 21 and len(runtime.calls) < 6  # planes of several callers per call
    assert batcher.stats.requests == 6 and batcher.stats.planes == 21


def test_batcher_respects_max_batch_and_passes_errors_to_their_callers():
    runtime = FakeRuntime(fail_on=3)
    batcher = DynamicBatcher(runtime, max_batch=4, max_wait_ms=1)
    assert np.all(batcher.probabilities(np.ones((3, 1, 2, 2), np.float32)) == 2)
    with pytest.raises(RuntimeError, match="device lost"):
        batcher.probabilities(np.full((2, 1, 2, 2), 3.0, np.float32))
    assert np.all(batcher.probabilities(np.ones((1, 1, 2, 2), np.float32)) == 2)  # still serving
    assert max(runtime.calls) <= 4


def _planes(size, n=3):
    """``n`` network-grid planes (normalised, N x 1 x size x size) of a localizer of the ICBM152
    template, cut as the segmenter cuts them: real anatomy, so the CC network finds a CC."""
    from medseg.demo import scan_localizer
    from medseg.examples import icbm152_head
    from medseg.infer.grid import VolumeLookup, plane_grid
    from medseg.infer.normalize2d import normalize_slice
    from medseg.segment.infer import CCSegmenter

    head = icbm152_head()
    if head is None:
        pytest.skip("nilearn (ICBM152 template) not installed")
    localizer = scan_localizer(head, slices=n, thickness_mm=3.0, pitch_deg=8.0)
    segmenter = CCSegmenter()
    values, mask = segmenter.series_values(localizer)
    lookup = VolumeLookup(localizer, values, mask)
    images = [lookup.image(plane_grid(plane, size)) for plane in segmenter.slice_planes(localizer, mask)]
    return np.stack([normalize_slice(image) for image in images])[:, None].astype(np.float32)


@needs_model
def test_io_binding_gives_the_plain_run_result():
    runtime = load_runtime()
    batch = _planes(runtime.contract.input.size)
    plain = runtime.run(batch)
    bound = np.concatenate([runtime._run_bound(batch[i:i + 1]) for i in range(len(batch))])
    assert np.array_equal(plain, bound)


@needs_model
def test_fp16_variant_is_listed_loads_and_agrees_with_fp32():
    full = load_runtime()
    half = load_runtime(precision="fp16")
    assert half.providers == ["CPUExecutionProvider"] and half.path.name.endswith(".fp16.onnx")
    assert half is not full and half.precision == "fp16"
    variant = full.contract.variants.fp16
    from medseg.segment.export import sha256

    assert sha256(half.path) == variant.sha256
    batch = _planes(full.contract.input.size)
    a, b = full.probabilities(batch) > 0.5, half.probabilities(batch) > 0.5
    assert a.any() and np.mean(a != b) < 1e-3


@needs_model
def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ModelError, match="no fp8 variant"):
        load_runtime(precision="fp8")


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os

    from medseg.io.atomic import write_text_atomic

    path = write_text_atomic(tmp_path / "a.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
