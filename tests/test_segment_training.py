"""The training pipeline (CC and brain-mask targets) runs end to end on tiny inputs; the ONNX
export matches torch."""

import json

import nibabel as nib
import numpy as np
import onnxruntime as ort
import pytest

from medseg.config import ConfigError, from_dict
from medseg.segment.export import export_onnx
from medseg.segment.nets import ModelConfig
from medseg.segment.train import DataConfig, TrainConfig, TrainingConfig, load_training_config, train
from medseg.synth.phantom import HeadPhantom, phantom_volume
from tests.conftest import REPO


def write_phantom_subject(folder, seed):
    """A FreeSurfer-like subject (T1.mgz + aseg.mgz, CC = 251, brainmask.mgz) from the phantom,
    LIA 1.5 mm."""
    folder.mkdir(parents=True)
    affine = np.array([[-1.5, 0, 0, 0], [0, 0, 1.5, 0], [0, -1.5, 0, 0], [0, 0, 0, 1.0]])  # LIA (RAS)
    affine[:3, 3] = -affine[:3, :3] @ np.array([59.5, 59.5, 59.5])
    lps = np.diag([-1.0, -1, 1, 1]) @ affine
    image, labels = phantom_volume(HeadPhantom(pitch_deg=seed * 5.0, seed=seed), (120, 120, 120), lps)
    aseg = np.where(np.asarray(labels.array) == 7, 251, np.asarray(labels.array)).astype(np.int32)
    nib.save(nib.MGHImage(np.asarray(image.array).astype(np.float32), affine), str(folder / "T1.mgz"))
    nib.save(nib.MGHImage(aseg, affine), str(folder / "aseg.mgz"))
    brain = (np.asarray(labels.array) >= 3).astype(np.uint8)  # CSF, grey and white matter inside the skull
    nib.save(nib.MGHImage(brain * np.asarray(image.array).astype(np.float32), affine),
             str(folder / "brainmask.mgz"))


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs")
    for n in range(2):
        write_phantom_subject(root / f"sub-{n}", n)
    return root


def tiny_config(root, out, model="attention_unet", target="corpus_callosum", **train):
    return TrainingConfig(
        data=DataConfig(root=str(root), train_subjects=("sub-0",), val_subjects=("sub-1",),
                        image_size=64, spacing_mm=4.0, target=target),
        model=ModelConfig(name=model, channels=(4, 8, 16), strides=(2, 2), feature_size=12),
        train=TrainConfig(**{"batch_size": 2, "iterations_per_epoch": 2, "epochs": 2, "workers": 0,
                             "output_dir": str(out), **train}),
    )


def test_training_runs_writes_metrics_and_resumes(subjects, tmp_path):
    config = tiny_config(subjects, tmp_path / "run")
    best = train(config, show_progress=False)
    assert best.exists() and (tmp_path / "run" / "last.pt").exists()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    # resuming a finished run does no more epochs; a longer one continues from epoch 2
    longer = tiny_config(subjects, tmp_path / "run")
    longer = TrainingConfig(data=longer.data, model=longer.model,
                              train=TrainConfig(**{**longer.train.__dict__, "epochs": 3}))
    train(longer, show_progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


@pytest.mark.parametrize("model", ["attention_unet", "swin_unetr"])
def test_onnx_export_matches_torch(subjects, tmp_path, model):
    config = tiny_config(subjects, tmp_path / model, model=model, epochs=1)
    best = train(config, show_progress=False)
    onnx_path, contract_path, diff = export_onnx(best, tmp_path / "export", name=model)
    assert diff < 1e-4
    contract = json.loads(contract_path.read_text())
    assert contract["input"]["spacing_mm"] == 4.0 and contract["output"]["labels"]["1"] == "corpus_callosum"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["medseg_contract_version"] == contract["contract_version"]
    out = session.run(None, {"image": np.zeros((3, 1, 64, 64), np.float32)})[0]
    assert out.shape == (3, 2, 64, 64)


def test_brain_mask_training_exports_a_skull_stripping_contract(subjects, tmp_path):
    """The skull-stripping model trains through the same pipeline (target: brain) and its export
    is a valid contract that the skull stripper runs through onnxruntime."""
    from medseg.infer.runtime import load_runtime
    from medseg.preprocess.skullstrip import NoBrainFoundError, SkullStripper
    from medseg.segment.data import PlanePose, Subject

    subject = Subject.load(subjects / "sub-1")
    image, label = subject.sample(PlanePose(offset_mm=30.0), 64, 4.0, target="brain")
    assert label.any()  # the target is the brain on the sampled plane itself, off the midline too
    _, far = subject.sample(PlanePose(offset_mm=120.0), 64, 4.0, target="brain")
    assert not far.any()
    config = tiny_config(subjects, tmp_path / "brain", target="brain", epochs=1)
    best = train(config, show_progress=False)
    onnx_path, contract_path, diff = export_onnx(best, tmp_path / "export", name="skullstrip_tiny")
    assert diff < 1e-4
    contract = json.loads(contract_path.read_text())
    assert contract["output"]["labels"]["1"] == "brain" and "skull stripping" in contract["task"]
    stripper = SkullStripper(load_runtime("skullstrip_tiny", models_dir=tmp_path / "export"))
    volume = phantom_volume(HeadPhantom(seed=3), (40, 40, 40), np.diag([4.0, 4.0, 4.0, 1.0]))[0]
    try:  # two iterations of training: the mask may be anything, but on the input grid
        result = stripper.extract(volume)
        assert result.mask.shape == volume.shape and result.native_planes
    except NoBrainFoundError as exc:
        assert "no brain found" in str(exc)


def test_shipped_configs_load_and_unknown_keys_fail(tmp_path):
    for path in (REPO / "configs").glob("*.yaml"):
        if path.name.startswith("dask_") or path.name == "pipeline.yaml":  # run configs (tests/test_dask_engine.py,
            continue  # tests/test_config.py)
        config = load_training_config(path)
        assert config.model.name in ("attention_unet", "swin_unetr", "unetr")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(TrainingConfig, {"train": {"batchsize": 3}})
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(TrainingConfig, {"model": {"name": "resnet"}})


def test_runs_fine_tuned_from_one_start_export_as_their_averaged_weights(subjects, tmp_path):
    """Two runs fine-tuned from the same start average into one network (a model soup): every
    weight is the mean of the two, the contract says what was averaged, and a run that did not
    start from the same weights is refused."""
    import torch

    from medseg.segment.export import average_checkpoints

    start = train(tiny_config(subjects, tmp_path / "start", epochs=1), show_progress=False)
    runs = [train(tiny_config(subjects, tmp_path / f"ft{lr}", epochs=1, learning_rate=lr, init_from=str(start)),
                  show_progress=False) for lr in (1e-3, 3e-3)]
    soup = average_checkpoints(runs)
    states = [torch.load(r, map_location="cpu", weights_only=False)["model"] for r in runs]
    key = next(k for k, v in states[0].items() if v.is_floating_point() and not torch.equal(v, states[1][k]))
    torch.testing.assert_close(soup["model"][key], (states[0][key] + states[1][key]) / 2)
    assert [r["learning_rate"] for r in soup["averaged_from"]] == [1e-3, 3e-3]
    _, contract_path, diff = export_onnx(runs, tmp_path / "export", name="cc_soup")
    contract = json.loads(contract_path.read_text())
    assert diff < 1e-4 and "uniform average of 2 runs" in contract["training"]["data"]
    assert contract["training"].get("epochs") is None  # no single epoch
    with pytest.raises(ValueError, match="same starting weights"):
        average_checkpoints([start, runs[0]])  # no init_from at all
    other_start = train(tiny_config(subjects, tmp_path / "start2", epochs=1, seed=1), show_progress=False)
    other = train(tiny_config(subjects, tmp_path / "ft_other", epochs=1, init_from=str(other_start)),
                  show_progress=False)
    with pytest.raises(ValueError, match="same starting weights"):
        average_checkpoints([runs[0], other])  # another starting file
    data = torch.load(runs[1], map_location="cpu", weights_only=False)
    assert data["init_sha256"]  # training recorded the start
    torch.save({**data, "init_sha256": "0" * 64}, tmp_path / "replaced_start.pt")
    with pytest.raises(ValueError, match="same starting weights"):
        average_checkpoints([runs[0], tmp_path / "replaced_start.pt"])  # the file replaced between runs
    data["config"]["augment"]["rotation_deg"] = 5.0
    torch.save(data, tmp_path / "changed.pt")
    with pytest.raises(ValueError, match="augment config differs"):
        average_checkpoints([runs[0], tmp_path / "changed.pt"])
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(runs[:1])


def test_training_takes_a_label_only_subject_and_synthesised_images(subjects, tmp_path, monkeypatch):
    """A folder with aseg.mgz alone trains as a label-only subject (images synthesised from its
    labels), beside scanned subjects that get synthesised images in synth_fraction of samples;
    brain-mask training refuses both."""
    from dataclasses import replace

    import medseg.segment.data as data_module
    from medseg.segment.augment import AugmentConfig
    from tests.test_synthseg import PHANTOM_TO_ASEG

    labels_only = tmp_path / "labels-only"
    labels_only.mkdir()
    aseg = nib.load(str(subjects / "sub-0" / "aseg.mgz"))
    phantom = np.asarray(aseg.dataobj)  # phantom tissue codes, CC as 251
    relabelled = np.where(phantom == 251, 251, PHANTOM_TO_ASEG[np.clip(phantom, 0, 7)]).astype(np.int32)
    nib.save(nib.MGHImage(relabelled, aseg.affine), str(labels_only / "aseg.mgz"))
    loaded: list = []
    load = data_module.Subject.load.__func__
    monkeypatch.setattr(data_module.Subject, "load", classmethod(
        lambda cls, folder, **kw: loaded.append(load(cls, folder, **kw)) or loaded[-1]))
    calls = []
    synthesise = data_module.synthesise
    monkeypatch.setattr(data_module, "synthesise", lambda *a: calls.append(1) or synthesise(*a))
    config = tiny_config(subjects, tmp_path / "run", epochs=1)
    relative = "../" + str(labels_only.relative_to(subjects.parent))
    config = replace(config, data=replace(config.data, train_subjects=("sub-0", relative)),
                     augment=AugmentConfig(synth_fraction=0.5))
    best = train(config, show_progress=False)
    assert best.exists() and calls  # images were synthesised
    assert loaded[0].groups is not None and not loaded[0].label_only and loaded[1].label_only
    brain = replace(config, data=replace(config.data, target="brain"))
    with pytest.raises(ValueError, match="scanned subjects only"):
        train(brain, show_progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["augment"]["synth_fraction"] == 0.5 and saved["data"]["train_subjects"][1].startswith("../")


def test_a_fine_tuned_run_exports_interpolated_with_its_start(subjects, tmp_path):
    """WiSE-FT: every weight is (1 - a) x the start's + a x the run's; the contract says so; a
    start file replaced since training is refused, and so is a weight outside (0, 1)."""
    import shutil

    import torch

    from medseg.segment.export import interpolate_with_start

    start = train(tiny_config(subjects, tmp_path / "start", epochs=1), show_progress=False)
    kept = tmp_path / "start_copy.pt"
    shutil.copy(start, kept)
    run = train(tiny_config(subjects, tmp_path / "ft", epochs=1, init_from=str(start)), show_progress=False)
    mixed = interpolate_with_start(run, 0.25)
    s0 = torch.load(start, map_location="cpu", weights_only=False)["model"]
    s1 = torch.load(run, map_location="cpu", weights_only=False)["model"]
    key = next(k for k, v in s1.items() if v.is_floating_point() and not torch.equal(v, s0[k]))
    torch.testing.assert_close(mixed["model"][key], 0.75 * s0[key] + 0.25 * s1[key])
    _, contract_path, diff = export_onnx(run, tmp_path / "export", name="cc_wise", interpolate=0.25)
    data = json.loads(contract_path.read_text())["training"]["data"]
    assert diff < 1e-4 and "0.75 x the starting network" in data and "0.25 x the run" in data
    other = train(tiny_config(subjects, tmp_path / "other", epochs=1, seed=3), show_progress=False)
    shutil.copy(other, start)  # the start file replaced after the run (a model shipped anew)
    with pytest.raises(ValueError, match="is not the file"):
        interpolate_with_start(run, 0.5)
    # resumed after the replacement, the run keeps the record of the file it began from
    train(tiny_config(subjects, tmp_path / "ft", epochs=2, init_from=str(start)), show_progress=False)
    resumed = torch.load(tmp_path / "ft" / "last.pt", map_location="cpu", weights_only=False)
    assert resumed["state"]["epoch"] == 2
    with pytest.raises(ValueError, match="is not the file"):
        interpolate_with_start(tmp_path / "ft" / "last.pt", 0.5)
    torch.testing.assert_close(interpolate_with_start(run, 0.25, start=kept)["model"][key], mixed["model"][key])
    with pytest.raises(ValueError, match="not in"):
        interpolate_with_start(run, 1.0)
    with pytest.raises(ValueError, match="not fine-tuned"):
        interpolate_with_start(other, 0.5)
