"""DICOM Segmentation (binary, highdicom) of the CC and the brain mask on the source frames.

Segments: 1 = corpus callosum (SCT 88442005), 2 = brain (SCT 12738006) when skull stripping ran;
category "Anatomical Structure" (SCT 91723000); algorithm identification: the model's name,
medseg's version and the model file's sha256 (from its ``model.json`` contract). Frames without
any segment are omitted (``omit_empty_frames``).
"""

from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from medseg import __version__
from medseg.dicomout.source import DicomOutputError, SourceFrame, frame_thickness
from medseg.infer.contract import ModelContract
from medseg.volume import Volume

SEG_SERIES_NUMBER = 9200
CC_SEGMENT, BRAIN_SEGMENT = 1, 2


def algorithm_identification(contract: ModelContract | None) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=(contract.name if contract else "medseg")[:64], family=codes.DCM.ArtificialIntelligence,
        version=__version__, source="medseg",
        parameters={"model_sha256": contract.sha256 if contract else "unknown"})


def build_segmentation(frames: Sequence[SourceFrame], cc_mask: Volume, brain_mask: Volume | None,
                       contract: ModelContract | None, brain_contract: ModelContract | None = None) -> Dataset:
    """The SEG dataset: one frame per (source frame, segment) that holds any foreground.

    ``contract`` / ``brain_contract``: the ``model.json`` of the CC and skull-stripping models.
    """
    masks = [("Corpus callosum", codes.SCT.CorpusCallosum, cc_mask, algorithm_identification(contract))]
    if brain_mask is not None:
        masks.append(("Brain", codes.SCT.Brain, brain_mask, algorithm_identification(brain_contract)))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=label, segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=generate_uid(), tracking_id=label)
        for n, (label, code, _, algorithm) in enumerate(masks, start=1)]
    arrays = [np.asarray(m.array) for _, _, m, _ in masks]
    if any(a.shape[:3] != arrays[0].shape[:3] for a in arrays):
        raise DicomOutputError("the CC and brain masks are on different grids")
    # frame f of the SEG pixel array = mask slice k, as rows x columns (array[i, j, k] -> [j, i])
    pixels = np.stack([np.stack([a[:, :, f.slice_index].T > 0 for a in arrays], axis=-1) for f in frames])
    datasets = list({id(f.dataset): f.dataset for f in frames}.values())
    pixel_measures: hd.PixelMeasuresSequence | None = None
    plane_orientation: hd.PlaneOrientationSequence | None = None
    plane_positions: list[hd.PlanePositionSequence] | None = None
    if len(datasets) == 1 and frames[0].frame is not None:
        # enhanced multi-frame source: the SEG frames follow the source frames, and the plane
        # geometry is given explicitly (the source may keep it per frame, not shared)
        numbers = [f.frame for f in frames if f.frame is not None]
        assert len(numbers) == len(frames)  # map_frames numbers every frame of a multi-frame source
        order = np.argsort(numbers)
        pixels, ordered = pixels[order], [frames[i] for i in order]
        spacing = np.linalg.norm(cc_mask.affine[:3, :3], axis=0)
        thickness = frame_thickness(ordered[0].dataset, ordered[0].frame) or float(spacing[2])
        pixel_measures = hd.PixelMeasuresSequence(pixel_spacing=(float(spacing[1]), float(spacing[0])),
                                                  slice_thickness=thickness)
        plane_orientation = hd.PlaneOrientationSequence("PATIENT", ordered[0].orientation)
        plane_positions = [hd.PlanePositionSequence("PATIENT", f.position) for f in ordered]
    if not pixels[..., 0].any():
        raise DicomOutputError("the CC mask is empty on the source frames")
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="medseg", manufacturer_model_name=(contract.name if contract else "medseg")[:64],
        software_versions=f"medseg {__version__}", device_serial_number="0",
        series_description="medseg CC and brain segmentation", omit_empty_frames=True,
        content_label="MEDSEG", content_description="corpus callosum and brain mask (automatic)",
        pixel_measures=pixel_measures, plane_orientation=plane_orientation, plane_positions=plane_positions)
