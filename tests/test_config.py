"""The pipeline settings: configs/pipeline.yaml holds the defaults, the loader is strict."""

from __future__ import annotations

import dataclasses

import pytest

from medseg.batch.config import PipelineConfig, load_pipeline_config
from medseg.config import ConfigError
from medseg.preprocess.n4 import N4Options
from tests.conftest import REPO

YAML = REPO / "configs" / "pipeline.yaml"


def test_shipped_yaml_equals_the_dataclass_defaults():
    assert load_pipeline_config(YAML) == PipelineConfig()
    assert load_pipeline_config(None) == PipelineConfig()
    assert PipelineConfig().n4 == N4Options.fast()  # the profile the batch has always used


def test_yaml_lists_every_settable_field():
    """Every field a file may set appears in the shipped file (a new option gets documented)."""
    import yaml

    from medseg.batch.config import DERIVED

    data = yaml.safe_load(YAML.read_text())
    for section in dataclasses.fields(PipelineConfig):
        names = {f.name for f in dataclasses.fields(section.default_factory())}  # type: ignore[misc]
        assert set(data[section.name]) == names - set(DERIVED.get(section.name, ())), section.name


def test_values_are_typed_and_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("n4:\n  iterations: [5, 5]\nrun:\n  device: cuda\nstitch:\n  blend: multiband\n")
    config = load_pipeline_config(path)
    assert config.n4.iterations == (5, 5) and config.n4.convergence == N4Options.fast().convergence
    assert config.stitch_options().backend == "torch" and config.stitch_options().blend == "multiband"
    run = config.run_options()
    assert run.n4_options == config.n4 and run.stitch == config.stitch_options()
    for text, message in (("n4:\n  iteration: [5]\n", "unknown key"),
                          ("run:\n  device: gpu\n", "is not one of"),
                          ("n4:\n  convergence: fast\n", "n4.convergence"),
                          ("stitch:\n  backend: torch\n", "stitch.backend is not set here"),
                          ("url: http://pacs\n", "--pacs-config"),
                          ("extra: {}\n", "unknown key")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_pipeline_config(path)


def test_cpu_device_composes_on_the_cpu():
    config = dataclasses.replace(PipelineConfig(), run=dataclasses.replace(PipelineConfig().run, device="cpu"))
    options = config.stitch_options()
    assert (options.backend, options.device) == ("sitk", "cpu")
