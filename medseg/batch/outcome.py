"""What happened to one series of a study: a typed outcome, written as one row of study.json.

Each series (or spine set) a run routes ends in exactly one :class:`SeriesOutcome`: positioned,
stitched, skipped by the routing, or failed at a named stage. :meth:`SeriesOutcome.to_row` is the
only place that turns it into the JSON row that ``study.json``, ``summary.json`` and
``summary.csv`` (:data:`medseg.batch.report.COLUMNS`) carry, so the row's fields are spelled once.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Mapping

from medseg.errors import MedsegError, Stage, os_error_message

if TYPE_CHECKING:
    from pathlib import Path

    from medseg.positioning.pipeline import PositionResult
    from medseg.spine.compose import CompositeResult

SeriesStatus = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True)
class SeriesOutcome:
    """One series' outcome. ``fields`` holds what its stage produced (angles, area, output paths,
    the DICOM results written...), in the order the row shows them."""

    series: str  # the series' output folder name ("spine_01" for a spine set, "*" for the study)
    stage: Stage
    status: SeriesStatus
    key: str | None = None  # SeriesRef.key (None for a spine set or the whole study)
    error_type: str | None = None
    message: str | None = None
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_row(self) -> dict[str, Any]:
        """The study.json row: series, key, stage, status, error type and message where set,
        then the stage's fields."""
        row: dict[str, Any] = {"series": self.series}
        if self.key is not None:
            row["key"] = self.key
        row.update(stage=self.stage, status=self.status)
        if self.error_type is not None:
            row["error_type"] = self.error_type
        if self.message is not None:
            row["message"] = self.message
        row.update(self.fields)
        return row

    @classmethod
    def skipped(cls, series: str, key: str, reason: str) -> SeriesOutcome:
        return cls(series, "route", "skipped", key=key, message=reason)

    @classmethod
    def unavailable(cls, series: str, key: str, stage: Stage, error_type: str, message: str) -> SeriesOutcome:
        """A series failed for a reason outside it (no CC model, an engine that lost its workers)."""
        return cls(series, stage, "failed", key=key, error_type=error_type, message=message)

    @classmethod
    def failed(cls, series: str, stage: Stage, exc: BaseException, key: str | None = None) -> SeriesOutcome:
        """A failed series: a MedsegError at its own stage; a file-system error with its errno;
        any other exception is a bug and keeps its traceback."""
        own: Stage = getattr(exc, "medseg_stage", None) or getattr(exc, "stage", None) or stage
        if isinstance(exc, MedsegError):
            return cls(series, own, "failed", key, type(exc).__name__, str(exc))
        if isinstance(exc, OSError):
            return cls(series, own, "failed", key, type(exc).__name__, os_error_message(exc),
                       MappingProxyType({"errno": exc.errno}))
        bug: Stage = getattr(exc, "medseg_stage", None) or stage
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))
        return cls(series, bug, "failed", key, type(exc).__name__,
                   f"internal error in stage {bug} ({type(exc).__name__}: {exc})",
                   MappingProxyType({"traceback": trace}))

    @classmethod
    def positioned(cls, series: str, key: str, result: PositionResult, paths: Mapping[str, Path],
                   out: Path, dicom: Mapping[str, Any]) -> SeriesOutcome:
        """A positioned series: its plan's angles, the CC's area and confidence, the warnings,
        its QC picture and result.json (relative to the study folder ``out``), the DICOM results."""
        final = result.localization.final
        fields: dict[str, Any] = dict(dicom)
        fields.update(
            kind=result.segmentation.kind, final_angle_deg=round(final.angle_deg, 3),
            box_angle_deg=round(result.localization.box.angle_deg, 3),
            line_angle_deg=round(result.localization.line.angle_deg, 3),
            consistent=result.localization.consistent, cc_area_mm2=round(result.measurements.area_mm2, 1),
            confidence=round(float(result.segmentation.confidence), 4),
            brain_volume_ml=round(result.brain.volume_ml, 1) if result.brain else None)
        if result.warnings:
            fields["warning"] = "; ".join(result.warnings)
        fields.update(qc=str(paths["qc"].relative_to(out)), result=str(paths["result"].relative_to(out)))
        return cls(series, "position", "ok", key=key, fields=MappingProxyType(fields))

    @classmethod
    def stitched(cls, series: str, station_keys: list[str], composite: CompositeResult, paths: Mapping[str, Path],
                 out: Path, dicom: Mapping[str, Any]) -> SeriesOutcome:
        """A composed spine set: its stations, their corrections, the preview and report."""
        fields: dict[str, Any] = dict(dicom)
        fields.update(stations=station_keys, corrections_mm=[s.correction_mm for s in composite.stations],
                      qc=str(paths["preview"].relative_to(out)), result=str(paths["report"].relative_to(out)))
        return cls(series, "stitch", "ok", fields=MappingProxyType(fields))
