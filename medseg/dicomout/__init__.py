"""DICOM results a PACS can file beside their source: SEG, TID 1500 SR, secondary capture.

``write_dicom_results`` writes ``dicom/seg.dcm``, ``dicom/sr.dcm`` and ``dicom/sc.dcm`` for one
positioned series; ``write_spine_capture`` writes ``dicom/sc.dcm`` for a spine composite. Each file
is written atomically. The objects are described in the README (*DICOM results*).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Sequence

from pydicom.dataset import Dataset

from medseg.dicomout.source import DicomOutputError, map_frames, read_sources
from medseg.infer.contract import ModelContract, load_contract
from medseg.io.atomic import atomic_path

__all__ = ["DicomOutputError", "write_dicom_results", "write_spine_capture", "dicom_entry"]


@contextlib.contextmanager
def _quiet_person_names():
    """highdicom warns about unusual PatientName values and quotes them: no patient name may reach
    a log, so that one warning is silenced while the objects are built."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        yield


def _save(ds: Dataset, target: Path) -> Path:
    with atomic_path(target, suffix=".dcm") as temp:
        ds.save_as(temp, enforce_file_format=True)
    return target


def _shipped_contract(name: str) -> ModelContract | None:
    from medseg.infer.runtime import default_models_dir

    path = default_models_dir() / f"{name}.json"
    return load_contract(path) if path.exists() else None


def write_dicom_results(result, source_files: Sequence[str | Path], out_dir: Path, *,
                        brain_contract: ModelContract | None = None) -> dict[str, Path]:
    """SEG, SR and SC of one :class:`~medseg.positioning.pipeline.PositionResult` under
    ``out_dir/dicom``. ``out_dir`` holds the series' file outputs (``qc.png``, ``result.json``).
    ``brain_contract``: the skull-stripping model's ``model.json`` (default: the shipped one).

    Raises:
        DicomOutputError: no usable source DICOM (e.g. NIfTI input), frames off the grid, or some
            object failed (then ``.written`` holds the objects that were written, ``.failures``
            the reason per object).
    """
    with _quiet_person_names():
        return _write_dicom_results(result, source_files, Path(out_dir), brain_contract)


def _write_dicom_results(result, source_files, out_dir: Path, brain_contract: ModelContract | None
                         ) -> dict[str, Path]:
    """Each object is built and saved on its own: a failing one (recorded in the error's
    ``written`` / ``failures``) does not lose the others. The SR needs the SEG it references."""
    from medseg.dicomout.sc import build_secondary_capture
    from medseg.dicomout.seg import build_segmentation
    from medseg.dicomout.sr import build_report, nearest_frame

    volume = result.volume
    frames = map_frames(read_sources(source_files), volume.affine, volume.shape)
    contract = result.model
    if result.brain is not None and brain_contract is None:
        from medseg.preprocess.skullstrip import MODEL_NAME

        brain_contract = _shipped_contract(MODEL_NAME)
    reference = nearest_frame(frames, volume.affine, result.segmentation.midsagittal_point)
    target = out_dir / "dicom"
    written: dict[str, Path] = {}
    failures: dict[str, str] = {}

    def attempt(name, build):
        try:
            written[name] = _save(build(), target / f"{name}.dcm")
            return True
        except Exception as exc:  # recorded per object; the other objects are still written
            failures[name] = f"{type(exc).__name__}: {exc}"
            return False

    seg = {}

    def build_seg():
        seg["ds"] = build_segmentation(frames, result.segmentation.mask,
                                       result.brain.mask if result.brain is not None else None,
                                       contract, brain_contract)
        return seg["ds"]

    def build_sr():
        data = json.loads((out_dir / "result.json").read_text()) if (out_dir / "result.json").exists() \
            else result.as_dict()
        return build_report(data, seg["ds"], frames, reference, contract)

    if attempt("seg", build_seg):
        attempt("sr", build_sr)
    else:
        failures["sr"] = "not written: it references the SEG, which failed"
    attempt("sc", lambda: build_secondary_capture(out_dir / "qc.png", reference.dataset, description="medseg QC"))
    if failures:
        error = DicomOutputError("; ".join(f"{k}: {v}" for k, v in failures.items()))
        error.written, error.failures = written, failures
        raise error
    return written


def write_spine_capture(preview: Path, source_files: Sequence[str | Path], out_dir: Path) -> dict[str, Path]:
    """``out_dir/dicom/sc.dcm``: the spine preview as a secondary capture in the stations' study."""
    from medseg.dicomout.sc import build_secondary_capture

    source = read_sources(list(source_files)[:1])[0]
    with _quiet_person_names():
        sc = build_secondary_capture(Path(preview), source, description="medseg spine preview", series_number=9203)
    return {"sc": _save(sc, Path(out_dir) / "dicom" / "sc.dcm")}


def dicom_entry(write, root: Path, *args) -> dict:
    """Run a writer for the batch's study.json: ``{"dicom": {name: relative path}}``, or the reason
    it was skipped (no source DICOM) or failed. Never raises: the other outputs are kept."""
    try:
        paths = write(*args)
    except DicomOutputError as exc:
        written = exc.written
        status = "skipped" if "NIfTI" in str(exc) else "partial" if written else "failed"
        entry: dict[str, object] = {"dicom_status": status, "dicom_message": str(exc)}
        if written:
            entry["dicom"] = {k: str(Path(v).relative_to(root)) for k, v in written.items()}
            entry["dicom_errors"] = dict(exc.failures)
        return entry
    except Exception as exc:  # a failing DICOM object must not lose the other outputs
        return {"dicom_status": "failed", "dicom_message": f"{type(exc).__name__}: {exc}"}
    return {"dicom_status": "ok", "dicom": {k: str(Path(v).relative_to(root)) for k, v in paths.items()}}
