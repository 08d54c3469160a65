"""The independent Node.js consumer (integration/node) gives medseg's masks, label for label."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import DATA, REPO

NODE_DIR = REPO / "integration" / "node"


def _requirements():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").exists():
        pytest.skip("run `npm install --ignore-scripts` in integration/node")
    if not (REPO / "models" / "cc_attention_unet.json").exists():
        pytest.skip("no shipped CC model in models/")


def _test_volume(tmp_path):
    """Sagittal slices around the midline of a real head: the raw scanner T1 of the shared data,
    else the ICBM152 template (nilearn, in the dev extra)."""
    from medseg.io import load_volume

    real = DATA / "dicom" / "siemens-xa30-enhanced" / "5_anat-T1w_acq-tfl"
    if real.exists():
        volume, start, name = load_volume(real), 40, "xa30"
    else:
        pytest.importorskip("nilearn")
        from medseg.examples import example_head

        volume = example_head().reorient("PIL")  # sagittal slices along the last axis
        start, name = volume.shape[2] // 2 - 8, "icbm152"
    take = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 3, start], [0, 0, 0, 1.0]])  # every 3rd slice
    return volume.with_array(np.asarray(volume.array)[:, :, start:start + 16:3], affine=volume.affine @ take), name


def test_node_consumer_equals_medseg(tmp_path):
    _requirements()
    from medseg.segment.infer import CCSegmenter

    volume, name = _test_volume(tmp_path)
    segmenter = CCSegmenter()
    raw, head = segmenter.series_values(volume)
    planes = segmenter.slice_planes(volume, head)
    inverse = np.linalg.inv(volume.affine)
    case = tmp_path / "case"
    case.mkdir()
    names, raw_planes = [], []
    outside = segmenter.runtime.contract.input.normalization.outside_image_value
    for i, plane in enumerate(planes):
        points = segmenter.plane_points(plane).reshape(-1, 3)
        index = (points @ inverse[:3, :3].T + inverse[:3, 3]).T
        raw_plane = ndimage.map_coordinates(raw, index, order=1, mode="constant", cval=outside)
        raw_plane = raw_plane.reshape(segmenter.size, segmenter.size).astype(np.float32)
        raw_plane.tofile(case / f"plane{i}.f32")
        names.append(f"plane{i}.f32")
        raw_planes.append(raw_plane)
    (case / "case.json").write_text(json.dumps({"height": segmenter.size, "width": segmenter.size,
                                                "planes": names}))
    ours = segmenter._predict(raw_planes) > 0.5  # medseg's own normalisation and inference
    subprocess.run(["node", str(NODE_DIR / "segment.js"), str(REPO / "models" / "cc_attention_unet.json"),
                    str(case)], check=True, capture_output=True, text=True)
    theirs = np.fromfile(case / "mask_node.u8", dtype=np.uint8).reshape(ours.shape).astype(bool)
    assert ours.any(), f"{name}: medseg found no CC in any slice; the comparison would be empty"
    np.testing.assert_array_equal(theirs, ours)


def test_node_consumer_refuses_a_model_that_is_not_the_contracts(tmp_path):
    """The consumer checks the model file against the contract's sha256 before running it."""
    _requirements()
    contract = json.loads((REPO / "models" / "cc_attention_unet.json").read_text())
    model = (REPO / "models" / contract["file"]).read_bytes()
    (tmp_path / contract["file"]).write_bytes(model[:-1] + bytes([model[-1] ^ 1]))  # one bit changed
    (tmp_path / "contract.json").write_text(json.dumps(contract))
    case = tmp_path / "case"
    case.mkdir()
    (case / "case.json").write_text(json.dumps({"height": 16, "width": 16, "planes": []}))
    run = subprocess.run(["node", str(NODE_DIR / "segment.js"), str(tmp_path / "contract.json"), str(case)],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "sha256" in run.stderr, run.stderr
