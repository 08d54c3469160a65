"""DICOM results of `medseg run`: SEG on the source grid, TID 1500 SR angles, secondary capture."""

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from medseg.batch import run as batch
from medseg.dicomout.sr import ANGLES, PLAN_ANGLES, REGIONS, read_angles
from medseg.io import load_volume
from tests.conftest import REPO
from tests.dicom_results_helpers import localizer_study, seg_onto_grid

pytestmark = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                reason="no shipped CC model")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicomout")
    uid = localizer_study(root / "in", nifti=True)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (root / "in").rglob("*"))
    status, report = batch.run([root / "in"], root / "out", batch.RunOptions(quiet=True))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (root / "in").rglob("*")) == before
    return root, uid, status, report


def _entries(root, uid):
    return {s["series"]: s for s in json.loads((root / "out" / uid / "study.json").read_text())["series"]}


def test_seg_lies_on_the_source_grid_and_equals_the_nifti_masks(outputs):
    root, uid, status, _ = outputs
    assert status == 0
    entry = _entries(root, uid)["0001_localizer_sag"]
    assert entry["dicom_status"] == "ok", entry
    folder = root / "out" / uid
    seg = pydicom.dcmread(folder / entry["dicom"]["seg"])
    sources = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, sorted((root / "in" / "loc").iterdir()))}
    assert seg.StudyInstanceUID == uid and seg.FrameOfReferenceUID == next(iter(sources.values())).FrameOfReferenceUID
    assert seg.SeriesInstanceUID not in {ds.SeriesInstanceUID for ds in sources.values()}
    cc = load_volume(folder / "0001_localizer_sag" / "cc_mask.nii.gz")
    brain = load_volume(folder / "0001_localizer_sag" / "brain_mask.nii.gz")
    masks = seg_onto_grid(seg, sources, cc.affine, cc.shape)
    assert np.array_equal(masks[1], np.asarray(cc.array) > 0) and masks[1].any()
    assert np.array_equal(masks[2], np.asarray(brain.array) > 0)
    # empty frames are omitted: the CC lies on fewer slices than the localizer has
    cc_frames = sum(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == 1
                    for f in seg.PerFrameFunctionalGroupsSequence)
    assert cc_frames == int((np.asarray(cc.array) > 0).any(axis=(0, 1)).sum()) < cc.shape[2]
    # codes and algorithm identification (model sha256 from its contract)
    parsed = hd.seg.segread(folder / entry["dicom"]["seg"])
    described = {d.segment_number: d for d in parsed.SegmentSequence}
    assert described[1].segmented_property_type == codes.SCT.CorpusCallosum
    assert described[1].segmented_property_type.value == "88442005"
    assert described[2].segmented_property_type == codes.SCT.Brain
    contract = json.loads((REPO / "models" / "cc_attention_unet.json").read_text())
    algorithm = described[1].algorithm_identification[0]
    assert algorithm.AlgorithmName == contract["name"]
    assert any(contract["sha256"] in str(v) for v in algorithm.AlgorithmParameters.split(","))


def test_sr_reads_back_the_angles_and_measurements_of_result_json(outputs):
    root, uid, *_ = outputs
    folder = root / "out" / uid
    entry = _entries(root, uid)["0001_localizer_sag"]
    result = json.loads((folder / entry["result"]).read_text())
    sr_path = folder / entry["dicom"]["sr"]
    angles = read_angles(sr_path)  # highdicom.sr.srread
    assert set(angles) == set(ANGLES) | set(PLAN_ANGLES)
    for key in ("box", "line", "final"):
        assert angles[key] == result["angles"][key]["angle_deg"]
    assert angles["box_line_difference_deg"] == result["angles"]["box_line_difference_deg"]
    for key in PLAN_ANGLES:
        assert angles[key] == result["axial_plan"][key]
    report = hd.sr.srread(sr_path)
    assert report.StudyInstanceUID == uid
    (morphometry,) = report.content.get_volumetric_roi_measurement_groups(finding_type=codes.SCT.CorpusCallosum)
    (area,) = [m for m in morphometry.get_measurements(name=codes.SCT.Area) if not m.finding_sites]
    assert area.value == result["measurements"]["area_mm2"] and area.unit == codes.UCUM.SquareMillimeter
    assert len(morphometry.get_measurements(name=codes.SCT.Area)) == 1 + len(REGIONS)
    seg = pydicom.dcmread(folder / entry["dicom"]["seg"])
    for group in report.content.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment.referenced_segment_numbers == [1] and segment.source_images_for_segmentation
    assert report.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99MEDSEG"


def test_secondary_capture_is_the_qc_picture_in_the_source_study(outputs):
    import cv2

    root, uid, *_ = outputs
    folder = root / "out" / uid
    entry = _entries(root, uid)["0001_localizer_sag"]
    sc = pydicom.dcmread(folder / entry["dicom"]["sc"])
    source = pydicom.dcmread(next((root / "in" / "loc").iterdir()))
    assert sc.StudyInstanceUID == uid and sc.PatientID == source.PatientID and sc.PatientName == source.PatientName
    assert sc.FrameOfReferenceUID == source.FrameOfReferenceUID and sc.PhotometricInterpretation == "RGB"
    qc = cv2.imread(str(folder / entry["qc"]))[:, :, ::-1]
    assert np.array_equal(sc.pixel_array, qc)


def test_nifti_input_records_why_no_dicom_was_written(outputs):
    root, uid, _, report = outputs
    summary = json.loads((root / "out" / "summary.json").read_text())
    rows = [s for study in summary["studies"] if study["study_id"] != uid for s in study["series"]]
    assert rows and all(r.get("dicom_status") == "skipped" and "NIfTI" in r["dicom_message"] for r in rows), rows


def test_brain_segment_names_the_skull_stripping_model(outputs):
    root, uid, *_ = outputs
    entry = _entries(root, uid)["0001_localizer_sag"]
    seg = hd.seg.segread(root / "out" / uid / entry["dicom"]["seg"])
    contract = json.loads((REPO / "models" / "skullstrip_attention_unet.json").read_text())
    algorithm = {d.segment_number: d for d in seg.SegmentSequence}[2].algorithm_identification[0]
    assert algorithm.AlgorithmName == contract["name"] and contract["sha256"] in algorithm.AlgorithmParameters


def test_spine_preview_becomes_a_secondary_capture_in_the_stations_study(tmp_path):
    from pydicom.uid import generate_uid
    from scipy import ndimage

    from medseg.io import write_dicom_series
    from medseg.synth.stations import StationSpec, make_stations
    from medseg.volume import Volume

    texture = ndimage.gaussian_filter(np.random.default_rng(1).normal(size=(28, 28, 150)), 2.0)
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [20.0, -20.0, -150.0]
    source = Volume(((texture - texture.min()) / np.ptp(texture) * 1000 + 100).astype(np.float32), affine)
    study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(), "BodyPartExamined": "SPINE",
             "PatientID": "S1"}
    specs = [StationSpec(148, 40, 1.2, 2.0), StationSpec(60, -60, 1.5, 2.5), StationSpec(-40, -148, 1.0, 2.0)]
    for number, station in zip((11, 12, 13), make_stations(source, specs).stations):
        write_dicom_series(station.with_array(station.array, dicom=study), tmp_path / "in" / f"s{number}",
                           series_description=f"t2 sag spine {number - 10}", series_number=number)
    batch.run([tmp_path / "in"], tmp_path / "out", batch.RunOptions(quiet=True, skull_strip=False))
    folder = tmp_path / "out" / study["StudyInstanceUID"]
    (entry,) = [s for s in json.loads((folder / "study.json").read_text())["series"] if s["stage"] == "stitch"]
    assert entry["dicom_status"] == "ok", entry
    sc = pydicom.dcmread(folder / entry["dicom"]["sc"])
    assert sc.StudyInstanceUID == study["StudyInstanceUID"] and sc.PatientID == "S1"
    assert sc.FrameOfReferenceUID == study["FrameOfReferenceUID"]
    import cv2

    assert np.array_equal(sc.pixel_array, cv2.imread(str(folder / entry["qc"]))[:, :, ::-1])


def test_seg_on_an_enhanced_multiframe_source(tmp_path):
    """Enhanced MR (per-frame geometry, one file): the SEG frames point at the right source frames
    and put the mask back where it was."""
    from medseg.dicomout.seg import build_segmentation
    from medseg.dicomout.source import map_frames, read_sources
    from medseg.infer.contract import load_contract
    from medseg.io import scan
    from tests.conftest import data_path

    (ref,) = scan([data_path("dicom", "siemens-xa30-enhanced", "5_anat-T1w_acq-tfl")]).series
    volume = ref.load()
    mask = np.zeros(volume.shape[:3], np.uint8)
    mask[40:60, 30:50, 47:50] = 1
    mask[10, 5, 3] = 1
    cc = volume.with_array(mask)
    frames = map_frames(read_sources(ref.files), volume.affine, volume.shape)
    contract = load_contract(REPO / "models" / "cc_attention_unet.json")
    seg = build_segmentation(frames, cc, None, contract)
    source = pydicom.dcmread(ref.files[0], stop_before_pixels=True)
    inverse = np.linalg.inv(volume.affine)
    back = np.zeros_like(mask)
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    assert int(seg.NumberOfFrames) == 4  # empty frames omitted
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        position = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
        number = int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        source_frame = source.PerFrameFunctionalGroupsSequence[number - 1]
        source_position = source_frame.PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose(np.array(source_position, float), position, atol=1e-3)
        back[:, :, int(round((inverse[:3, :3] @ position + inverse[:3, 3])[2]))] = frame.T
    assert np.array_equal(back, mask)


def test_a_failing_object_keeps_the_others_and_is_recorded(outputs, tmp_path):
    """The QC picture is missing: SEG and SR are still written, the SC failure is recorded."""
    import shutil
    from types import SimpleNamespace

    from medseg.dicomout import dicom_entry, write_dicom_results
    from medseg.infer.contract import load_contract
    from medseg.io import scan

    root, uid, *_ = outputs
    entry = _entries(root, uid)["0001_localizer_sag"]
    series = tmp_path / "series"
    shutil.copytree(root / "out" / uid / "0001_localizer_sag", series, ignore=shutil.ignore_patterns("dicom", "qc.png"))
    (ref,) = scan([root / "in" / "loc"]).series
    data = json.loads((series / "result.json").read_text())
    contract = load_contract(REPO / "models" / "cc_attention_unet.json")
    result = SimpleNamespace(volume=ref.load(), brain=None, model=contract,
                             segmentation=SimpleNamespace(mask=load_volume(series / "cc_mask.nii.gz"),
                                                          midsagittal_point=data["midsagittal"]["point_mm"]))
    recorded = dicom_entry(write_dicom_results, tmp_path, result, ref.files, series)
    assert recorded["dicom_status"] == "partial" and set(recorded["dicom"]) == {"seg", "sr"}
    assert set(recorded["dicom_errors"]) == {"sc"} and "qc.png" in recorded["dicom_errors"]["sc"]
    assert read_angles(series / "dicom" / "sr.dcm")["final"] == data["angles"]["final"]["angle_deg"]
    assert not (series / "dicom" / "sc.dcm").exists() and entry["dicom_status"] == "ok"


def test_a_source_without_its_uids_is_a_clear_dicom_out_error(tmp_path):
    """A source file lacking SOPInstanceUID (or another reference UID) cannot be referenced by a
    SEG/SR/SC: a DicomOutputError names the missing attribute, instead of failing deep inside."""
    from pydicom.dataset import FileMetaDataset

    from medseg.dicomout.source import DicomOutputError, read_sources

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()  # the dataset lacks its own
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPClassUID = pydicom.uid.MRImageStorage
    ds.Modality = "MR"
    path = tmp_path / "no_sop_uid.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomOutputError, match="SOPInstanceUID"):
        read_sources([path])
