"""`medseg run --engine dask` on a LocalCluster of 2 workers: the same outputs as the local
engine, and a worker killed mid-run loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from pydicom.uid import generate_uid

from medseg.batch import run as batch
from medseg.io import write_dicom_series
from medseg.synth.phantom import sagittal_affine
from medseg.volume import Volume, VolumeMeta
from tests.conftest import REPO, icbm152_localizer

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.skipif(not (REPO / "models" / "cc_attention_unet.json").exists(),
                                reason="no shipped CC model")


def _studies(root, n_heads=2):
    for k in range(n_heads):
        study = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid(),
                 "PatientName": "Secret^Person", "PatientID": f"P{k}"}
        image = icbm152_localizer(-8.0 + 8.0 * k, study=study)
        write_dicom_series(image, root / f"head{k}",
                           series_description="localizer sag", series_number=1)
    yy, zz = np.mgrid[0:128, 0:128]
    bottle = np.repeat((((yy - 64) ** 2 + (zz - 64) ** 2) < 50 ** 2)[:, :, None] * 800, 5, axis=2)
    write_dicom_series(Volume(bottle.astype(np.int16), sagittal_affine((128, 128, 5), (2.0, 2.0, 5.0)),
                              VolumeMeta(modality="MR", dicom={"StudyInstanceUID": generate_uid()})),
                       root / "bottle", series_description="bottle sag", series_number=4)
    return root


def _outcome(output):
    """Per study: status, rows without timings, and the sha256 of every mask."""
    found = {}
    for study_json in sorted(output.glob("*/study.json")):
        data = json.loads(study_json.read_text())
        masks = {str(p.relative_to(study_json.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(study_json.parent.rglob("*_mask.nii.gz"))}
        rows = [{k: v for k, v in row.items() if k not in ("seconds", "traceback")} for row in data["series"]]
        found[study_json.parent.name] = (data["status"], rows, masks)
    return found


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _studies(tmp_path_factory.mktemp("dask") / "in")


@pytest.fixture(scope="module")
def local_result(folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("local") / "out"
    status, _ = batch.run([folder], output, batch.RunOptions(quiet=True))
    return status, _outcome(output)


def test_dask_local_cluster_gives_the_local_engines_outputs(folder, local_result, tmp_path):
    from medseg.batch.dask_engine import DaskOptions

    output = tmp_path / "out"
    options = batch.RunOptions(quiet=True, engine="dask", dask=DaskOptions(cluster="local:2"))
    status, report = batch.run([folder], output, options)
    assert (status, _outcome(output)) == local_result
    engine = report["engine"]
    assert engine["engine"] == "dask" and engine["workers"] == 2
    assert sum(w["studies"] for w in engine["per_worker"].values()) == 3
    assert not list(output.glob(".partial-*"))


def test_a_worker_killed_mid_run_loses_nothing(folder, local_result, tmp_path):
    from distributed import Client, LocalCluster

    from medseg.batch.dask_engine import DaskOptions

    output = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        options = batch.RunOptions(quiet=True, engine="dask",
                                   dask=DaskOptions(scheduler=cluster.scheduler_address, retries=3))
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(result=batch.run([folder], output, options)))
        runner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(output.glob(".partial-*")):
            time.sleep(0.05)  # a worker has started writing a study
        assert list(output.glob(".partial-*")), "no study started"
        os.kill(pids[0], signal.SIGKILL)
        runner.join(300)
        assert not runner.is_alive()
    status, _ = outcome["result"]
    assert (status, _outcome(output)) == local_result


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_jobqueue_scripts_carry_the_configured_resources(kind, tmp_path):
    pytest.importorskip("dask_jobqueue")
    from medseg.batch.dask_engine import DaskOptions, JobQueueOptions, job_script
    from medseg.config import load_config

    config = tmp_path / "dask.yaml"
    config.write_text("cluster: %s\nretries: 1\njobqueue:\n  queue: gpu\n  cores: 8\n  memory: 32GB\n"
                      "  walltime: '04:00:00'\n  gpus: 1\n  jobs: 3\n" % kind)
    options = load_config(config, DaskOptions)
    assert options.jobqueue == JobQueueOptions(queue="gpu", cores=8, memory="32GB", walltime="04:00:00",
                                               gpus=1, jobs=3)
    script = job_script(kind, options)
    assert "gpu" in script and "04:00:00" in script and "GPU=1" in script
    assert ("--gres=gpu:1" if kind == "slurm" else "ngpus=1") in script


def test_the_shipped_slurm_config_loads_and_builds_a_job_script():
    pytest.importorskip("dask_jobqueue")
    from medseg.batch.dask_engine import DaskOptions, job_script
    from medseg.config import load_config

    options = load_config(REPO / "configs" / "dask_slurm.yaml", DaskOptions)
    assert options.cluster == "slurm" and options.jobqueue.processes == 2
    assert "--gres=gpu:1" in job_script("slurm", options)
