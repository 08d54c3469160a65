"""Sending a study's results to a destination AE with C-STORE (pynetdicom SCU).

What is sent is collected from the study's output folder by :func:`result_files`:
- every DICOM object the batch stages wrote: ``*/dicom/*.dcm`` (the SEG/SR/SC writers of
  :mod:`medseg.dicomout`, where the batch writes them) and ``*/composite_dicom/*`` (the spine
  composite as a derived series);
- for a positioned series with no DICOM objects, a derived series of its CC mask in the source grid
  (``cc_mask_dicom/``), so that the destination receives the result in any case.

``RESULT_WRITERS`` is the hook for further writers: each is called with (series output folder,
its SeriesRef) and returns the DICOM files it wrote there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from medseg.io.scan import SeriesRef, Study

log = logging.getLogger(__name__)

ResultWriter = Callable[[Path, SeriesRef], list[Path]]


def cc_mask_series(folder: Path, ref: SeriesRef) -> list[Path]:
    """The CC mask of a positioned series as a derived DICOM series (when no DICOM objects exist)."""
    import numpy as np

    from medseg.io import read_nifti, write_dicom_series

    mask_path = folder / "cc_mask.nii.gz"
    if not mask_path.exists() or (folder / "dicom").exists() or (folder / "cc_mask_dicom").exists():
        return []
    mask = read_nifti(mask_path)
    source = mask.with_array(mask.array, dicom=dict(ref.study_attributes), series_uid=ref.series_uid)
    labels = mask.with_array((np.asarray(mask.array) > 0).astype(np.int16), dicom=dict(ref.study_attributes))
    return write_dicom_series(labels, folder / "cc_mask_dicom", series_description="medseg CC mask",
                              series_number=9100 + (ref.series_number or 0) % 100, derivation="corpus callosum mask",
                              reference=source)


RESULT_WRITERS: list[ResultWriter] = [cc_mask_series]


def result_files(study: Study, folder: Path) -> list[Path]:
    """The DICOM files to send for one processed study (writing the fallback objects first)."""
    from medseg.io.atomic import safe_name

    for ref in study.series:
        series_dir = folder / safe_name(ref.name)
        if series_dir.is_dir():
            for writer in RESULT_WRITERS:
                try:
                    writer(series_dir, ref)
                except Exception as exc:  # a failed writer leaves the other results to send
                    log.warning("%s: result object not written (%s: %s)", ref.name, type(exc).__name__, exc)
    files = [p for pattern in ("*/dicom/*.dcm", "*/composite_dicom/*", "*/cc_mask_dicom/*")
             for p in sorted(folder.glob(pattern)) if p.is_file()]
    return files


def send_files(files: list[Path], destination, *, calling_ae: str = "MEDSEG") -> tuple[int, list[str]]:
    """C-STORE ``files`` to ``destination`` (a Destination); returns (number sent, problems)."""
    from pydicom import dcmread
    from pynetdicom import AE

    if not files:
        return 0, []
    datasets = [dcmread(p) for p in files]
    ae = AE(ae_title=calling_ae)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        return 0, [f"association with {destination.ae_title}@{destination.host}:{destination.port} failed"]
    sent, problems = 0, []
    try:
        for path, ds in zip(files, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code == 0x0000:
                sent += 1
            else:
                problems.append(f"{path.name}: status {code if code is None else hex(code)}")
    finally:
        assoc.release()
    return sent, problems


def send_results(study: Study, folder: Path, destination, *, calling_ae: str = "MEDSEG") -> int:
    """Collect and send one study's results; logs the outcome, returns the number sent."""
    files = result_files(study, folder)
    sent, problems = send_files(files, destination, calling_ae=calling_ae)
    for problem in problems:
        log.error("sending to %s: %s", destination.ae_title, problem)
    log.info("sent %d of %d result file(s) to %s", sent, len(files), destination.ae_title)
    return sent
