"""The CLI's shared flags: every command takes -c/--config (and -i/--input where it reads inputs),
spells the shared flags alike, and config values reach the stages, with flags overriding them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import get_args

import pytest
from pydicom.uid import generate_uid

from medseg.batch.run import Device, Precision
from medseg.cli import DEVICES, PRECISIONS, build_parser, main, subcommands
from tests.conftest import REPO

COMMANDS = ("info", "convert", "stitch", "preprocess", "segment", "position", "run", "report", "listen",
            "pacs", "demo", "export")
WITH_INPUT = ("info", "convert", "stitch", "preprocess", "segment", "position", "run", "report", "export")


def _help(name: str) -> str:
    return subcommands(build_parser())[name].format_help()


def test_the_commands_are_the_documented_ones():
    assert tuple(subcommands()) == COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_config_and_the_shared_spellings(name):
    text = _help(name)
    assert "-c YAML, --config YAML" in text
    assert "-q, --quiet" in text and "-v, --verbose" in text
    if name in WITH_INPUT:
        assert re.search(r"-i \w+ \[\w+ \.\.\.\], --input \w+", text), text
    if name not in ("info", "report"):  # info prints; report rebuilds its input folder
        assert re.search(r"-o OUTPUT, --output OUTPUT", text), text
    if "--device" in text:  # one choice list, and no default of its own: run.device of the config
        assert "--device {auto,cpu,cuda,tensorrt}" in text
        assert "run.device" in text


def test_device_choices_match_the_options_type():
    assert DEVICES == get_args(Device) and PRECISIONS == get_args(Precision)


def test_stitch_has_the_same_device_choices_as_the_model_commands():
    assert "tensorrt" in _help("stitch") and "--device {auto,cpu,cuda,tensorrt}" in _help("position")


def test_positional_and_dash_i_inputs_are_the_same(tmp_path, capsys):
    from tests.test_run_hardening import spine_study

    spine_study(tmp_path / "in")
    assert main(["info", str(tmp_path / "in"), "--json", "-q"]) == 0
    positional = json.loads(capsys.readouterr().out)
    assert main(["info", "-i", str(tmp_path / "in"), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out) == positional
    assert main(["info", "-q"]) == 2  # no input at all: one clear error


def test_a_bad_config_file_is_one_error_for_any_command(tmp_path, caplog):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n4:\n  iteration: [3]\n")
    assert main(["info", str(tmp_path), "-c", str(bad), "-q"]) == 2
    assert "unknown key" in caplog.text


def test_config_values_reach_the_stages_and_flags_override_them(tmp_path, monkeypatch):
    """run -c: the N4 iterations reach the bias correction, the stitch section reaches the
    composer on --device cpu (SimpleITK, although the file says cuda), and the report shows both."""
    import medseg.preprocess.n4
    import medseg.spine
    from medseg.io import write_dicom_series
    from medseg.synth.phantom import HeadPhantom, phantom_volume, sagittal_affine
    from tests.test_run_hardening import spine_study

    spine_study(tmp_path / "in" / "spine")
    t1, _ = phantom_volume(HeadPhantom(), (64, 64, 40), sagittal_affine((64, 64, 40), (3.5, 3.5, 3.5)))
    write_dicom_series(t1.with_array(t1.array, dicom={"StudyInstanceUID": generate_uid()}),
                       tmp_path / "in" / "t1", series_description="t1 sag", series_number=2)
    seen: dict[str, object] = {}
    compose, correct = medseg.spine.compose, medseg.preprocess.n4.correct_bias_field

    def record_compose(volumes, options=None):
        seen["stitch"] = options
        return compose(volumes, options)

    def record_n4(volume, mask=None, *, options=None, **kwargs):
        seen["n4"] = options
        return correct(volume, mask, options=options, **kwargs)

    monkeypatch.setattr(medseg.spine, "compose", record_compose)
    monkeypatch.setattr(medseg.preprocess.n4, "correct_bias_field", record_n4)
    config = tmp_path / "pipeline.yaml"
    # positioning.localizer_n4: the phantom is sampled like a localizer (3.5 mm sagittal slices),
    # which is planned without N4 by default.
    config.write_text("n4:\n  iterations: [3, 3]\npositioning:\n  localizer_n4: slab\n"
                      "stitch:\n  blend: multiband\n  register: false\n"
                      "run:\n  device: cuda\n  skull_strip: false\n")
    status = main(["run", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-c", str(config),
                   "--device", "cpu", "--report", str(tmp_path / "run.json"), "-q"])
    assert status in (0, 1)  # the phantom may hold no CC the network finds: recorded, not the point
    assert seen["n4"].iterations == (3, 3) and seen["n4"].target_spacing_mm == 8.0  # the rest: fast profile
    stitch = seen["stitch"]
    assert (stitch.blend, stitch.register, stitch.backend, stitch.device) == ("multiband", False, "sitk", "cpu")
    options = json.loads((tmp_path / "run.json").read_text())["options"]
    assert options["device"] == "cpu" and options["skull_strip"] is False
    assert options["n4_options"]["iterations"] == [3, 3] and options["stitch"]["blend"] == "multiband"
    assert options["localizer_n4"] == "slab"


def test_export_validates_its_inputs_before_importing_torch(tmp_path):
    """A bad --validation file is one error, and nothing imports torch until the export runs."""
    (tmp_path / "eval.json").write_text("[1, 2]")
    code = ("import sys\nfrom medseg.cli import main\n"
            f"status = main(['export', {str(tmp_path / 'ckpt.pt')!r}, '-o', {str(tmp_path / 'models')!r}, "
            f"'--validation', {str(tmp_path / 'eval.json')!r}, '-q'])\n"
            "print(status, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "expected a JSON object" in out.stderr


def test_export_calls_the_exporter_with_the_loaded_validation(tmp_path, monkeypatch, capsys):
    import types

    calls: list[tuple] = []
    fake = types.ModuleType("medseg.segment.export")

    def export_onnx(checkpoint, out_dir, *, name, validation):
        calls.append(("onnx", str(checkpoint), str(out_dir), name, validation))
        return tmp_path / f"{name}.onnx", tmp_path / f"{name}.json", 1e-6

    def export_fp16_variant(contract_path):
        calls.append(("fp16", str(contract_path)))
        return {"file": "m.fp16.onnx"}

    fake.export_onnx, fake.export_fp16_variant = export_onnx, export_fp16_variant  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "medseg.segment.export", fake)
    (tmp_path / "eval.json").write_text('{"dice": 0.9}')
    assert main(["export", "ck.pt", "-o", str(tmp_path / "m"), "--name", "m", "--validation",
                 str(tmp_path / "eval.json"), "-q"]) == 0
    assert calls == [("onnx", "ck.pt", str(tmp_path / "m"), "m", {"dice": 0.9}), ("fp16", str(tmp_path / "m.json"))]
    assert main(["export", "-i", "ck.pt", "-o", str(tmp_path / "m"), "--no-fp16", "-q"]) == 0
    assert calls[-1] == ("onnx", "ck.pt", str(tmp_path / "m"), "cc_attention_unet", None)


@pytest.mark.parametrize("flags, medseg_info, library_info", [((), True, False), (("verbose",), True, True),
                                                               (("quiet",), False, False),
                                                               (("quiet", "verbose"), False, False)])
def test_library_info_messages_stay_out_of_the_cli_log(flags, medseg_info, library_info):
    """The CLI shows medseg's INFO lines; a library's (highdicom logs every module it copies at
    INFO) only with --verbose. Run in a fresh process: logging is configured once per process."""
    code = ("import argparse, logging; from medseg.cli import _setup_logging; "
            f"_setup_logging(argparse.Namespace(quiet={'quiet' in flags}, verbose={'verbose' in flags})); "
            "logging.getLogger('medseg.batch.run').info('study done'); "
            "logging.getLogger('highdicom.base').info('copy attributes'); "
            "logging.getLogger('highdicom.base').warning('library warning')")
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO).stderr
    assert ("study done" in stderr) == medseg_info, stderr
    assert ("copy attributes" in stderr) == library_info, stderr
    assert "library warning" in stderr
