"""Comprehensive 3D SR, TID 1500 measurement report (highdicom) of the plan and the CC measurements.

Three volumetric-ROI measurement groups, each referencing the SEG's corpus callosum segment (with
its source images) and each measurement referencing the source image nearest the mid-sagittal
point:
- "CC morphometry": area (SCT 42798000, mm2), perimeter (SCT 131191004, mm), midline length
  (SCT 410668003 Length, mm), mean thickness (private MS0030 with derivation SCT 373098007 Mean),
  the Hofer-Frahm and Witelson sub-areas (SCT Area, finding site = a private region code);
- "Localization": box, subcallosal line and final angles and their difference (private, deg);
- "Axial plan": pitch, roll, yaw (private, deg), centre x/y/z (private, mm, DICOM LPS) and the six
  ImageOrientationPatient components (private, UCUM "1").

Values are stored as DS text *and* FloatingPointValue (highdicom does both), so reading them back
with ``highdicom.sr.srread`` gives the float of ``result.json`` exactly.

Private coding scheme ``99MEDSEG`` (declared in CodingSchemeIdentificationSequence), used only
where neither SNOMED CT nor DCM has a code; the table below is the whole scheme.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from medseg import __version__
from medseg.dicomout.seg import CC_SEGMENT
from medseg.dicomout.source import SourceFrame
from medseg.infer.contract import ModelContract

SR_SERIES_NUMBER = 9201
SCHEME = "99MEDSEG"


def _private(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


# The private scheme: (key in result.json) -> code.
ANGLES = {
    "box": _private("MS0001", "CC bounding box long axis angle"),
    "line": _private("MS0002", "Subcallosal line angle"),
    "final": _private("MS0003", "Final localization angle"),
    "box_line_difference_deg": _private("MS0004", "Box to subcallosal line angle difference"),
}
PLAN_ANGLES = {
    "pitch_deg": _private("MS0010", "Axial plan pitch"),
    "roll_deg": _private("MS0011", "Axial plan roll"),
    "yaw_deg": _private("MS0012", "Axial plan yaw"),
}
PLAN_CENTRE = [_private(f"MS001{3 + n}", f"Axial plan centre {axis} (LPS)") for n, axis in enumerate("xyz")]
PLAN_IOP = [_private(f"MS002{n}", f"Axial plan image orientation component {n + 1}") for n in range(6)]
THICKNESS = _private("MS0030", "Corpus callosum thickness")
REGIONS = {("hofer_frahm_mm2", name): _private(f"MS01{n:02d}", f"CC Hofer-Frahm region {name}")
           for n, name in enumerate(("I", "II", "III", "IV", "V"), start=1)}
REGIONS.update({("witelson_mm2", name): _private(f"MS01{n:02d}", f"CC Witelson region {name.replace('_', ' ')}")
                for n, name in enumerate(("anterior_third", "anterior_midbody", "posterior_midbody",
                                          "isthmus", "splenium"), start=11)})
LOCALIZATION_FINDING = _private("MS0200", "Slice positioning localization")
PLAN_FINDING = _private("MS0201", "Axial slice plan")
DEG, MM, MM2, ONE = codes.UCUM.Degree, codes.UCUM.Millimeter, codes.UCUM.SquareMillimeter, codes.UCUM.NoUnits


def _coding_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "medseg private codes"
    item.CodingSchemeResponsibleOrganization = "medseg project"
    return item


def build_report(data: dict, seg: Dataset, frames: Sequence[SourceFrame], reference: SourceFrame,
                 contract: ModelContract | None) -> Dataset:
    """The SR dataset for ``data`` (``result.json``'s dict), referencing ``seg`` segment 1."""
    source = hd.sr.SourceImageForMeasurement(
        referenced_sop_class_uid=reference.dataset.SOPClassUID,
        referenced_sop_instance_uid=reference.dataset.SOPInstanceUID,
        referenced_frame_numbers=None if reference.frame is None else [reference.frame + 1])
    model_name = contract.name if contract else "medseg"
    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=__version__)

    def measure(name, value, unit, **extra):
        return hd.sr.Measurement(name=name, value=float(value), unit=unit, referenced_images=[source],
                                 algorithm_id=algorithm, **extra)

    # The segment reference is built from the SEG's referenced instances (highdicom's
    # ReferencedSegment.from_segmentation fails on a single-segment SEG, whose segment
    # identification is shared rather than per frame).
    segment_sources = [hd.sr.SourceImageForSegmentation(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
                       for series in seg.ReferencedSeriesSequence for item in series.ReferencedInstanceSequence]

    def group(label, finding, measurements):
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label),
            referenced_segment=hd.sr.ReferencedSegment(seg.SOPClassUID, seg.SOPInstanceUID, CC_SEGMENT,
                                                       source_images=segment_sources),
            finding_type=finding, algorithm_id=algorithm, measurements=measurements)

    m, angles, plan = data["measurements"], data["angles"], data["axial_plan"]
    morphometry = [measure(codes.SCT.Area, m["area_mm2"], MM2), measure(codes.SCT.Perimeter, m["perimeter_mm"], MM),
                   measure(codes.SCT.Length, m["midline_length_mm"], MM),
                   measure(THICKNESS, m["mean_thickness_mm"], MM, derivation=codes.SCT.Mean)]
    for (scheme, region), code in REGIONS.items():
        morphometry.append(measure(codes.SCT.Area, m[scheme][region], MM2,
                                   finding_sites=[hd.sr.FindingSite(anatomic_location=code)]))
    localization = [measure(code, angles[key]["angle_deg"] if key in ("box", "line", "final") else angles[key], DEG)
                    for key, code in ANGLES.items()]
    planned = [measure(code, plan[key], DEG) for key, code in PLAN_ANGLES.items()]
    planned += [measure(code, v, MM) for code, v in zip(PLAN_CENTRE, plan["center_mm"])]
    planned += [measure(code, v, ONE) for code, v in zip(PLAN_IOP, plan["image_orientation_patient"])]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="medseg", model_name=model_name))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.BrainMRI,
        imaging_measurements=[group("CC morphometry", codes.SCT.CorpusCallosum, morphometry),
                              group("Localization", LOCALIZATION_FINDING, localization),
                              group("Axial plan", PLAN_FINDING, planned)])
    evidence = list({id(f.dataset): f.dataset for f in frames}.values()) + [seg]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medseg", is_complete=True,
        series_description="medseg slice plan and CC measurements")
    sr.CodingSchemeIdentificationSequence = [_coding_scheme()]
    return sr


def read_angles(sr) -> dict[str, float]:
    """The localization and plan angles (keys as in ``result.json``) of an SR written by
    :func:`build_report`, from a file path (read with ``highdicom.sr.srread``) or a dataset."""
    if isinstance(sr, (str, Path)):
        report = hd.sr.srread(sr)
    else:
        report = sr if isinstance(sr, hd.sr.Comprehensive3DSR) else hd.sr.Comprehensive3DSR.from_dataset(sr)
    content = report.content  # a MeasurementReport when the SR declares TID 1500, as build_report's do
    if not isinstance(content, hd.sr.MeasurementReport):
        raise ValueError("not a TID 1500 measurement report")
    values: dict[str, float] = {}
    for group in content.get_volumetric_roi_measurement_groups():
        for key, code in {**ANGLES, **PLAN_ANGLES}.items():
            for item in group.get_measurements(name=code):
                values[key] = item.value
    return values


def nearest_frame(frames: Sequence[SourceFrame], affine: np.ndarray, point_mm) -> SourceFrame:
    k = (np.linalg.inv(affine) @ np.append(np.asarray(point_mm, float), 1.0))[2]
    return min(frames, key=lambda f: abs(f.slice_index - k))
