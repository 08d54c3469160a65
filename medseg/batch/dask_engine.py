"""`medseg run` on Dask: one task per study, model sessions loaded once per worker, retries when a
worker dies.

- The client scans headers only (no pixel data) and submits each study as one task; the task
  carries the study's scan record (series, stacks, frames, damage flags), so a worker never
  re-derives what belongs to a study and cannot lose a damage flag.
- Each worker loads its onnxruntime sessions once, through :class:`MedsegWorkerPlugin`, and keeps
  them for every study it runs. Tasks ask for the ``GPU`` resource when the run uses a GPU, so
  that GPU workers take the studies and CPU-only workers are never given one.
- A study is built in a private partial folder and renamed into place whole (as in the local
  engine), so a worker killed mid-study leaves nothing visible; Dask reruns its task on another
  worker (``retries``, and the scheduler's own rescheduling on worker loss). A study whose task
  fails for good is recorded as failed with the reason.
- The run-level files are rebuilt from every ``study.json`` in the output folder, exactly as the
  local engine does, so a distributed, a sharded and a single run give the same summaries.

Clusters: ``--scheduler ADDRESS`` (an existing cluster), ``--cluster local:N`` (a
``distributed.LocalCluster`` of N worker processes started and stopped here), ``--cluster slurm``
or ``--cluster pbs`` (dask-jobqueue, with :class:`DaskOptions` from ``--dask-config FILE``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from medseg.errors import DaskEngineError

if TYPE_CHECKING:
    from medseg.infer.runtime import Device, Precision

try:  # the dask extra; DaskOptions stays importable without it
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - exercised only without the extra
    WorkerPlugin = object  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobQueueOptions:
    """Resources of one batch job of a SLURM/PBS cluster (dask-jobqueue's own keywords)."""

    queue: str | None = None
    account: str | None = None
    cores: int = 2
    processes: int = 1
    memory: str = "8GB"
    walltime: str = "02:00:00"
    gpus: int = 0  # per job; adds the scheduler's GPU request and the worker's GPU resource
    jobs: int = 1  # jobs (nodes) to start
    job_extra_directives: tuple[str, ...] = ()
    local_directory: str | None = None


@dataclass(frozen=True)
class DaskOptions:
    """How the Dask engine finds or starts its cluster (``--dask-config`` YAML, flags override)."""

    scheduler: str | None = None  # address of a running scheduler
    cluster: str = "local:2"  # local:N, slurm or pbs (when no scheduler is given)
    threads_per_worker: int = 1
    retries: int = 2  # reruns of a study's task after a worker is lost or the task dies
    jobqueue: JobQueueOptions = field(default_factory=JobQueueOptions)
    gpu_resource: bool = False  # tasks need resources={"GPU": 1} (set for --device cuda/tensorrt)
    ort_threads: int = 0  # onnxruntime threads per worker; 0: the node's cores / its workers


class MedsegWorkerPlugin(WorkerPlugin):
    """Loads the CC and skull-stripping sessions once per worker process.

    Registered with ``client.register_plugin``; the models are created in ``setup`` (when the
    worker starts or joins), not in the tasks, so every study after the first pays nothing for
    them.
    """

    name = "medseg-models"

    def __init__(self, device: Device, precision: Precision, skull_strip: bool, threads: int = 0) -> None:
        self.device, self.precision, self.skull_strip, self.threads = device, precision, skull_strip, threads

    def setup(self, worker) -> None:  # noqa: D401 - Dask's hook
        from medseg.batch.run import load_models

        worker.medseg_models = load_models(self.device, self.precision, self.skull_strip, self.threads)

    def teardown(self, worker) -> None:
        worker.medseg_models = None


def _study_task(item, output: str, options) -> dict:
    """Run one study on a worker; returns its study.json content plus the worker's address."""
    from distributed import get_worker

    from medseg.batch.run import failure_lines, load_models, process_study

    study, key, sid = item
    worker: Any = get_worker()  # a distributed.Worker carrying our medseg_models (MedsegWorkerPlugin)
    models = getattr(worker, "medseg_models", None)
    if models is None:  # the plugin did not run (e.g. an old worker): load once now
        models = worker.medseg_models = load_models(options.device, options.precision, options.skull_strip)
    segmenter, stripper = models
    started = time.perf_counter()
    record = process_study(study, Path(output), options, segmenter, stripper, sid=sid, key=key)
    return {"study_id": record.study_id, "status": record.status, "worker": worker.address,
            "seconds": round(time.perf_counter() - started, 3), "failures": failure_lines(record.series)}


def _make_cluster(options: DaskOptions):
    """(cluster or None, client address): start the cluster the options name."""
    if options.scheduler:
        return None, options.scheduler
    kind, _, count = options.cluster.partition(":")
    if kind == "local":
        from distributed import LocalCluster

        try:
            workers = int(count or os.cpu_count() or 1)
        except ValueError as exc:
            raise DaskEngineError(f"--cluster local:N needs a number, got {options.cluster!r}") from exc
        resources = {"GPU": 1} if options.gpu_resource else None
        cluster = LocalCluster(n_workers=workers, threads_per_worker=options.threads_per_worker,
                               processes=True, dashboard_address=":0", resources=resources)
        return cluster, cluster
    if kind in ("slurm", "pbs"):
        try:
            import dask_jobqueue
        except ImportError as exc:
            raise DaskEngineError("--cluster slurm|pbs needs dask-jobqueue: pip install 'medseg[dask]'") from exc
        return _jobqueue_cluster("slurm" if kind == "slurm" else "pbs", options, dask_jobqueue), None
    raise DaskEngineError(f"--cluster must be local:N, slurm or pbs, got {options.cluster!r}")


def _jobqueue_cluster(kind: Literal["slurm", "pbs"], options: DaskOptions, dask_jobqueue, *, scale: bool = True):
    """A SLURM or PBS cluster of ``jobqueue.jobs`` jobs, each one worker process per
    ``processes``, with a GPU request and the GPU worker resource when ``gpus`` > 0."""
    q = options.jobqueue
    directives = list(q.job_extra_directives)
    worker_extra: list[str] = []
    if q.gpus:
        directives.append(f"--gres=gpu:{q.gpus}" if kind == "slurm" else f"-l ngpus={q.gpus}")
        worker_extra = ["--resources", f"GPU={q.gpus}"]
    kwargs = dict(queue=q.queue, account=q.account, cores=q.cores, processes=q.processes,
                  memory=q.memory, walltime=q.walltime, job_extra_directives=directives,
                  worker_extra_args=worker_extra, local_directory=q.local_directory)
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    cluster = cls(**{k: v for k, v in kwargs.items() if v is not None})
    if scale:
        cluster.scale(jobs=q.jobs)
    return cluster


def job_script(kind: Literal["slurm", "pbs"], options: DaskOptions) -> str:
    """The batch script dask-jobqueue would submit for one job (nothing is submitted)."""
    import dask_jobqueue

    cluster = _jobqueue_cluster(kind, options, dask_jobqueue, scale=False)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _quiet_dask_logs() -> None:
    """distributed sets its loggers to INFO when imported, past medseg's -q and default level;
    its chatter, including the tracebacks of connections closed while a cluster stops
    (logged at INFO), is shown only with -v."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_dask(studies: Sequence, output: Path, options, dask: DaskOptions, *, show_progress: bool = True
             ) -> dict:
    """Run ``studies`` ((Study, key, folder id) from the client's header scan) on a Dask cluster.

    Returns the engine's part of the run report: cluster, dashboard, per-worker studies and
    throughput, and the studies whose task failed for good (each also recorded as a failed
    study.json, so nothing disappears).

    Raises:
        DaskEngineError: the extra is not installed or the cluster cannot be started.
    """
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise DaskEngineError("--engine dask needs the dask extra: pip install 'medseg[dask]'") from exc
    from medseg.batch.run import patient_words, record_engine_failure
    from medseg.io.redact import redact
    from medseg.progress import progress

    _quiet_dask_logs()
    cluster, address = _make_cluster(dask)
    started = time.perf_counter()
    per_worker: Counter[str] = Counter()
    busy: defaultdict[str, float] = defaultdict(float)
    lost: list[dict] = []
    try:
        with Client(address if address is not None else cluster) as client:
            if client.dashboard_link:
                log.info("Dask dashboard: %s", client.dashboard_link)
            client.register_plugin(MedsegWorkerPlugin(options.device, options.precision, options.skull_strip,
                                                      _ort_threads(dask)))
            resources = {"GPU": 1} if dask.gpu_resource else None
            futures = {client.submit(_study_task, item, str(output), options, key=f"study-{item[2]}",
                                     retries=dask.retries, resources=resources, pure=False): item
                       for item in studies}
            for future in progress(as_completed(futures), total=len(futures), desc="studies",
                                   unit="study", enabled=show_progress):
                study, key, sid = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the task failed for good (e.g. its workers kept dying)
                    reason = redact(f"{type(exc).__name__}: {exc}", patient_words(study))
                    lost.append({"study_uid_hash": _hash(study.uid), "error": reason})
                    record_engine_failure(study, output, reason, sid=sid, key=key)
                    log.error("study %s: failed: its task failed for good: %s", sid, reason)
                    continue
                per_worker[outcome["worker"]] += 1
                busy[outcome["worker"]] += outcome["seconds"]
                log.info("study %s: %s (%s)", outcome["study_id"], outcome["status"], outcome["worker"])
                for line in outcome.get("failures", []):
                    log.warning("study %s: %s", outcome["study_id"], line)
            workers = len(client.scheduler_info().get("workers", {}))
    finally:
        if cluster is not None:
            cluster.close()
    wall = time.perf_counter() - started
    return {
        "engine": "dask",
        "cluster": dask.scheduler or dask.cluster,
        "workers": workers,
        "wall_seconds": round(wall, 3),
        "studies_per_minute": round(60.0 * sum(per_worker.values()) / wall, 2) if wall > 0 else None,
        "per_worker": {w: {"studies": n, "busy_seconds": round(busy[w], 3),
                           "studies_per_minute": round(60.0 * n / busy[w], 2) if busy[w] else None}
                       for w, n in sorted(per_worker.items())},
        "failed_tasks": lost,
    }


def _ort_threads(options: DaskOptions) -> int:
    if options.ort_threads or options.scheduler:
        return options.ort_threads
    kind, _, count = options.cluster.partition(":")
    if kind == "local":
        return max(1, (os.cpu_count() or 1) // max(1, int(count or 1)))
    return max(1, options.jobqueue.cores // max(1, options.jobqueue.processes))


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:16]
