"""The pipeline's settings: one YAML file (``configs/pipeline.yaml``), one section per stage,
read by every command's ``-c/--config`` (the generic strict loader is :mod:`medseg.config`).

It lives with the batch job (the top of the packages) because it gathers the options of every
stage: N4, positioning, spine composing and the run itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medseg.batch.run import RunOptions, stitch_options_for
from medseg.config import from_dict
from medseg.errors import ConfigError
from medseg.pipeline import LOCALIZER_N4, LocalizerN4
from medseg.preprocess.n4 import N4Options
from medseg.spine.compose import StitchOptions

# Fields the loader fills from the other sections (or from ``run.device``); a YAML file sets them
# in their own section, never twice. ``defer_extras`` belongs to ``medseg listen`` (plan first),
# which sets it itself.
DERIVED = {"run": ("n4_options", "stitch", "max_difference_deg", "localizer_n4", "dask", "defer_extras"),
           "stitch": ("backend", "device")}


@dataclass(frozen=True)
class PositioningOptions:
    """Slice positioning from the corpus callosum.

    Attributes:
        max_difference_deg: box and line angles that differ more are flagged as inconsistent.
        localizer_n4: N4 of a localizer planned without skull stripping: ``off`` (planned on the
            image as it came), ``slab`` (fitted on the slices the CC search reads) or ``full``
            (see :data:`medseg.pipeline.LOCALIZER_N4`). With skull stripping the
            localizer gets the full N4 (``run.n4`` false turns N4 off everywhere).
    """

    max_difference_deg: float = 10.0
    localizer_n4: LocalizerN4 = LOCALIZER_N4


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's options (defaults: ``configs/pipeline.yaml``).

    Attributes:
        n4: bias-field correction of run, position, segment, listen and pacs (and of preprocess
            when a config file is given); default: the fast profile the CC network is tuned for.
        positioning: the angles of the positioning stage.
        stitch: whole-spine composing; its backend and device follow ``run.device``.
        run: device, precision, N4/skull stripping on or off, and the batch job's settings.
    """

    n4: N4Options = field(default_factory=N4Options.fast)
    positioning: PositioningOptions = field(default_factory=PositioningOptions)
    stitch: StitchOptions = field(default_factory=StitchOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def stitch_options(self) -> StitchOptions:
        """The stitch section composing on ``run.device``."""
        return stitch_options_for(self.run.device, self.stitch)

    def run_options(self) -> RunOptions:
        """The batch's :class:`RunOptions` carrying the n4, stitch and positioning sections."""
        return dataclasses.replace(self.run, n4_options=self.n4, stitch=self.stitch_options(),
                                   max_difference_deg=self.positioning.max_difference_deg,
                                   localizer_n4=self.positioning.localizer_n4)


def load_pipeline_config(path: str | Path | None = None) -> PipelineConfig:
    """The pipeline settings of YAML ``path`` (missing sections and keys keep their defaults),
    or the defaults when ``path`` is None.

    Raises:
        ConfigError: the file cannot be read, or holds an unknown or derived key or a wrong type.
    """
    if path is None:
        return PipelineConfig()
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {data!r}")
    sections = {f.name for f in dataclasses.fields(PipelineConfig)}
    if data and not set(data) & sections and set(data) & {"url", "store_url", "dimse", "username"}:
        raise ConfigError(f"{path} holds PACS settings, not pipeline settings: pass it with --pacs-config")
    for section, names in DERIVED.items():
        given = sorted(set(data.get(section) or {}) & set(names)) if isinstance(data.get(section), dict) else []
        if given:
            raise ConfigError(f"{path}: {section}.{given[0]} is not set here (n4, stitch and positioning "
                              "have their own sections; the stitch backend follows run.device; "
                              "medseg listen sets defer_extras)")
    return from_dict(PipelineConfig, data, where=str(path))
