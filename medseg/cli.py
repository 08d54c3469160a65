"""The ``medseg`` command: parses arguments and calls the library; no image logic lives here.

Every command takes ``-c/--config`` (the pipeline settings, ``configs/pipeline.yaml``; flags
override them) and spells its flags alike (:data:`FLAGS`): ``-i/--input`` (positional inputs
work too), ``-o/--output``, ``--device``, ``--precision``, ``-j/--jobs``, ``--report``, ``-q/-v``.

Exit status: 0 all inputs succeeded; 1 some studies/series failed (each recorded, the rest done);
2 bad usage, an unusable output, or nothing succeeded. ``medseg run`` follows the same codes per
study, and exits 130/143 when stopped by SIGINT/SIGTERM. Every error is one line on stderr (a
traceback only with ``-v``, for bugs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg import __version__
from medseg.errors import InputError, MedsegError, os_error_message

if TYPE_CHECKING:
    from medseg.batch.config import PipelineConfig
    from medseg.batch.dask_engine import DaskOptions
    from medseg.io.scan import ScanResult, SeriesRef
    from medseg.volume import Volume

log = logging.getLogger("medseg")

EXIT_OK, EXIT_PARTIAL, EXIT_FAILED = 0, 1, 2
# The choices of medseg.batch.run.Device / Precision (tests/test_cli_flags.py checks they agree);
# spelled out here so that --help imports nothing but the standard library.
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16")


# --- The shared flag registry: one spelling and one default per flag, for every command --------

def _flag_input(parser: argparse.ArgumentParser, metavar: str = "INPUT",
                text: str = "files or folders (DICOM, NIfTI, MGZ)") -> None:
    parser.add_argument("inputs", nargs="*", type=Path, metavar=metavar, help=text + " (or -i)")
    parser.add_argument("-i", "--input", dest="input", action="extend", nargs="+", type=Path, default=[],
                        metavar=metavar, help=text)


def _flag_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")


def _flag_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, metavar="YAML",
                        help="pipeline settings (see configs/pipeline.yaml; unknown keys are errors); "
                             "flags given here override them")


def _flag_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="onnxruntime providers: auto = TensorRT -> CUDA -> CPU, whichever loads; the "
                             "spine composer runs SimpleITK on cpu, torch on cuda/tensorrt (default: the "
                             "config's run.device, cpu)")


def _flag_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="model variant (fp16: for GPUs; listed in each model.json; default: the "
                             "config's run.precision, fp32)")


def _flag_jobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="studies loaded/bias-corrected ahead in parallel (default: run.jobs, 1)")


def _flag_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", type=Path, metavar="RUN_JSON", help="also write the run report here")


def _flag_logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


FLAGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "input": _flag_input, "output": _flag_output, "config": _flag_config, "device": _flag_device,
    "precision": _flag_precision, "jobs": _flag_jobs, "report": _flag_report, "logging": _flag_logging,
}


def add_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the registry's flags ``names`` (``-c/--config`` and ``-q/-v`` always)."""
    for name in dict.fromkeys(("config", *names, "logging")):
        FLAGS[name](parser)


def _inputs(args: argparse.Namespace) -> list[Path]:
    """Positional inputs and ``-i/--input`` together."""
    inputs = [*getattr(args, "inputs", []), *getattr(args, "input", [])]
    if not inputs:
        raise InputError(f"medseg {args.command}: give the inputs (as arguments or with -i/--input)")
    return inputs


def _setup_logging(args: argparse.Namespace) -> None:
    """medseg's own messages at the chosen level; other libraries' (highdicom logs every module
    it copies at INFO) only from WARNING, unless --verbose. A host that configured logging
    already (a notebook, an embedding application) keeps its configuration."""
    if logging.getLogger().handlers:
        return
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=logging.DEBUG if level == logging.DEBUG else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("medseg").setLevel(level)


def _replace(options: Any, **changes: Any) -> Any:
    """``options`` with the given flags (None: not given, the config's value stays)."""
    return dataclasses.replace(options, **{k: v for k, v in changes.items() if v is not None})


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The config file's settings (or the defaults), overridden by the flags given."""
    from medseg.batch.config import load_pipeline_config

    config = load_pipeline_config(args.config)
    run = _replace(config.run, device=getattr(args, "device", None), precision=getattr(args, "precision", None),
                   jobs=getattr(args, "jobs", None),
                   n4=False if getattr(args, "no_n4", False) else None,
                   skull_strip=False if getattr(args, "no_skullstrip", False) else None,
                   quiet=True if args.quiet else None)
    positioning = _replace(config.positioning, max_difference_deg=getattr(args, "max_difference", None))
    return dataclasses.replace(config, run=run, positioning=positioning)


def _one_line(exc: BaseException) -> str:
    from medseg.batch.series import one_line

    return one_line(exc)


# --- Commands -------------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    from medseg.io import scan

    if args.config is not None:  # a bad config file is an error here too (its stages do not run)
        pipeline_config(args)
    inputs = _inputs(args)
    result = scan(inputs, show_progress=not args.quiet)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        _print_info(result)
    if not result.series:
        log.error("no image series found under %s", ", ".join(map(str, inputs)))
        return EXIT_FAILED
    return EXIT_PARTIAL if result.errors or any(not s.ok for s in result.series) else EXIT_OK


def _print_info(result: ScanResult) -> None:
    for study in result.studies:
        print(f"study {study.uid}: {len(study.series)} series")
        for ref in study.series:
            spacing = "x".join(f"{s:.3g}" for s in ref.spacing) if ref.spacing else "?"
            shape = "x".join(str(s) for s in ref.shape)
            number = ref.series_number if ref.series_number is not None else "-"
            label = f" [{ref.label}]" if ref.label else ""
            print(f"  #{number} {ref.description!r}{label} {ref.modality or ref.kind} "
                  f"{ref.orientation} {shape} @ {spacing} mm, {len(ref.files)} file(s)")
            print(f"      key {ref.key}")
            for problem in ref.problems:
                print(f"      problem: {problem}")
    for path, reason in result.skipped:
        log.debug("skipped %s: %s", path, reason)
    if result.skipped:
        print(f"skipped {len(result.skipped)} non-image file(s) (use -v to list them)")
    for _path, error in result.errors:
        print(f"error: {error}")


def cmd_convert(args: argparse.Namespace) -> int:
    from medseg.io import scan, write_nifti
    from medseg.io.atomic import unique_names

    pipeline_config(args)
    inputs = _inputs(args)
    result = scan(inputs, show_progress=not args.quiet)
    if not result.series:
        log.error("no image series found under %s", ", ".join(map(str, inputs)))
        return EXIT_FAILED
    failures = len(result.errors)
    names = unique_names([(ref.name, ref.key) for ref in result.series])
    converted = 0
    for ref, name in zip(result.series, names):
        target = args.output / f"{name}.nii.gz"
        try:
            write_nifti(ref.load(), target)
        except (MedsegError, OSError) as exc:
            failures += 1
            log.error("series %s not converted: %s", ref.key, _one_line(exc))
            continue
        converted += 1
        print(target)
    return EXIT_FAILED if not converted else EXIT_PARTIAL if failures else EXIT_OK


def cmd_stitch(args: argparse.Namespace) -> int:
    from medseg.batch.series import report_broken, station_sets
    from medseg.io import scan
    from medseg.spine import compose
    from medseg.spine.outputs import write_stitch_outputs

    config = pipeline_config(args)
    reference: str | int | None = args.reference
    if isinstance(reference, str) and reference.isdigit():
        reference = int(reference)
    stitch = _replace(config.stitch, register=False if args.no_register else None,
                      rigid=True if args.rigid else None, max_shift_mm=args.max_shift, reference=reference,
                      intensity=args.intensity, blend=args.blend)
    options = dataclasses.replace(config, stitch=stitch).stitch_options()
    result = scan(_inputs(args), show_progress=not args.quiet)
    failures, done = report_broken(result.series), 0  # a damaged station is never left out silently
    sets = station_sets(result.series, args.series or ())
    if not sets:
        log.error("no composing set found (need 2+ sagittal/coronal series of one sequence that "
                  "overlap head-foot); pass --series to choose stations explicitly")
        return EXIT_FAILED
    for number, members in enumerate(sets, start=1):
        out = args.output if len(sets) == 1 else args.output / f"set{number:02d}"
        try:
            composite = compose([m.load() for m in members], options)
            paths = write_stitch_outputs(composite, out, dicom=not args.no_dicom)
        except (MedsegError, OSError) as exc:
            failures += 1
            log.error("composing set %d failed: %s", number, _one_line(exc))
            continue
        for station in composite.stations:
            log.info("station %d %r: correction %s mm, gain %.4g, %s", station.index,
                     station.description, station.correction_mm, station.gain, station.registration)
        for path in paths.values():
            print(path)
        done += 1
    return EXIT_FAILED if not done else EXIT_PARTIAL if failures else EXIT_OK


def cmd_segment(args: argparse.Namespace) -> int:
    from medseg.batch.series import run_per_series
    from medseg.io import write_nifti
    from medseg.preprocess import correct_bias_field
    from medseg.segment.infer import CCSegmenter

    config = pipeline_config(args)
    segmenter = CCSegmenter(device=config.run.device, precision=config.run.precision)

    def work(ref: SeriesRef, volume: Volume, out: Path) -> list[Path]:
        corrected = correct_bias_field(volume, options=config.n4)[0] if config.run.n4 else volume
        seg = segmenter.segment(corrected)
        where = (f"slice {seg.slice_index}" if seg.kind == "localizer" else
                 "plane through " + ", ".join(f"{v:.1f}" for v in seg.midsagittal_point) + " mm, normal "
                 + ", ".join(f"{v:.3f}" for v in seg.midsagittal_normal))
        log.info("%s: CC %.0f mm2 on the mid-sagittal %s", ref.name, seg.area_mm2, where)
        return [write_nifti(seg.mask, out / "cc_mask.nii.gz")]

    return run_per_series(_inputs(args), args.output, work, quiet=args.quiet)


def cmd_preprocess(args: argparse.Namespace) -> int:
    from medseg.batch.series import image_series, run_per_series
    from medseg.pipeline import preprocess_volume, write_preprocess_outputs
    from medseg.preprocess.n4 import N4Options
    from medseg.preprocess.skullstrip import SkullStripper

    config = pipeline_config(args)
    # the full N4 profile unless a config file (its n4 section) or --fast says otherwise
    n4 = N4Options.fast() if args.fast else config.n4 if args.config else N4Options()
    stripper = SkullStripper(device=config.run.device, precision=config.run.precision) \
        if config.run.skull_strip else None

    def work(ref: SeriesRef, volume: Volume, out: Path) -> list[Path]:
        result = preprocess_volume(volume, stripper, n4_options=n4)
        paths = write_preprocess_outputs(result, out)
        if result.error:
            raise result.error
        log.info("%s: brain %.0f ml; N4 %.1f s, skull stripping %.1f s", ref.name,
                 result.brain.volume_ml if result.brain else float("nan"), result.seconds.get("n4", 0.0),
                 result.seconds.get("skullstrip", 0.0))
        return list(paths.values())

    return run_per_series(_inputs(args), args.output, work, select=image_series, quiet=args.quiet)


def cmd_position(args: argparse.Namespace) -> int:
    from medseg.batch.series import run_per_series
    from medseg.positioning.pipeline import position_volume, write_position_outputs
    from medseg.segment.infer import CCSegmenter

    config = pipeline_config(args)
    run = config.run
    segmenter = CCSegmenter(device=run.device, precision=run.precision)
    stripper = None
    if run.skull_strip:
        from medseg.preprocess.skullstrip import SkullStripper

        stripper = SkullStripper(device=run.device, precision=run.precision)

    def work(ref: SeriesRef, volume: Volume, out: Path) -> list[Path]:
        result = position_volume(volume, segmenter, n4=run.n4, n4_options=config.n4,
                                 max_difference_deg=config.positioning.max_difference_deg, stripper=stripper,
                                 n4_mode=config.positioning.localizer_n4)
        final = result.localization.final
        log.info("%s: final angle %+.1f deg (box %+.1f, line %+.1f)%s", ref.name, final.angle_deg,
                 result.localization.box.angle_deg, result.localization.line.angle_deg,
                 "" if result.localization.consistent else " - box and line disagree")
        return list(write_position_outputs(result, out).values())

    return run_per_series(_inputs(args), args.output, work, quiet=args.quiet)


def run_options(args: argparse.Namespace) -> Any:
    """The batch's RunOptions: the config's sections, then the flags of ``medseg run``."""
    from medseg.batch.run import parse_shard, parse_size

    config = pipeline_config(args)
    run = config.run_options()
    try:
        max_memory = parse_size(args.max_memory) if args.max_memory else None
    except ValueError as exc:
        raise InputError(f"--max-memory: {exc}") from exc
    run = _replace(run, resume=True if args.resume or args.resume_skip_failed else None,
                   resume_skip_failed=True if args.resume_skip_failed else None,
                   shard=parse_shard(args.shard) if args.shard else None, max_memory=max_memory,
                   engine=args.engine, dicom_out=args.dicom_out)
    if run.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {run.jobs}")
    return dataclasses.replace(run, dask=_dask_options(args, run.engine, run.device))


def cmd_run(args: argparse.Namespace) -> int:
    from medseg.batch.run import run
    from medseg.io.atomic import check_output_file, write_json_atomic

    options = run_options(args)
    if args.report:
        check_output_file(args.report)  # before the run, not after hours of work
    status, report = run(_inputs(args), args.output, options)
    if args.report:
        write_json_atomic(args.report, report)
    stopped = f"stopped by {report['interrupted']}: " if report["interrupted"] else ""
    print(f"{stopped}{report['studies']} studies ({report['resumed_studies']} kept from earlier runs), "
          f"{report['partial_studies']} partial, {report['failed_studies']} failed"
          + (f", {report['not_started']} not started" if report["not_started"] else "")
          + f"; see {Path(report['output']) / 'index.html'} and {Path(report['output']) / 'summary.csv'}")
    return int(status)


def _dask_options(args: argparse.Namespace, engine: str, device: str) -> DaskOptions | None:
    """DaskOptions from --dask-config, overridden by --scheduler/--cluster; None for the local engine."""
    if engine != "dask":
        if args.scheduler or args.cluster or args.dask_config:
            raise InputError("--scheduler, --cluster and --dask-config need --engine dask")
        return None
    from medseg.batch.dask_engine import DaskOptions
    from medseg.config import load_config

    options = load_config(args.dask_config, DaskOptions) if args.dask_config else DaskOptions()
    changes: dict[str, Any] = {k: v for k, v in (("scheduler", args.scheduler), ("cluster", args.cluster)) if v}
    changes["gpu_resource"] = options.gpu_resource or device in ("cuda", "tensorrt")
    return dataclasses.replace(options, **changes)


def cmd_report(args: argparse.Namespace) -> int:
    from medseg.batch.report import rebuild, status_counts

    pipeline_config(args)
    folders = {*args.inputs, *args.input, *([args.output] if args.output else [])}
    if len(folders) != 1:
        raise InputError("medseg report: give one output folder of medseg run (OUT, -i OUT or -o OUT)")
    (folder,) = folders
    if not folder.is_dir():
        log.error("%s is not a medseg output folder", folder)
        return EXIT_FAILED
    studies = rebuild(folder)
    counts = status_counts(studies)
    print(f"{len(studies)} studies: " + ", ".join(f"{n} {k}" for k, n in counts.items())
          + f"; see {folder / 'index.html'} and {folder / 'summary.csv'}")
    return EXIT_FAILED if not (counts["ok"] or counts["partial"]) else \
        EXIT_PARTIAL if counts["failed"] or counts["partial"] else EXIT_OK


def cmd_listen(args: argparse.Namespace) -> int:
    from medseg.listen import Destination, Listener, ListenOptions

    config = pipeline_config(args)
    try:
        destination = Destination.parse(args.send_to) if args.send_to else None
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    options = ListenOptions(output=args.output, spool=args.spool, host=args.host, port=args.port,
                            ae_title=args.ae_title, allowed_callers=tuple(args.allow or ()),
                            complete_on=args.complete_on, quiet_seconds=args.quiet_seconds,
                            queue_size=args.queue, send_to=destination,
                            health_seconds=args.health_seconds, run=config.run_options())
    return int(Listener(options).serve())


def cmd_pacs(args: argparse.Namespace) -> int:
    from medseg.pacs import StudyQuery, load_config, run_pacs

    options = pipeline_config(args).run_options()
    dimse = {"peer": args.dimse, "retrieve": args.retrieve, "calling_ae": args.calling_ae}
    config = load_config(args.pacs_config, dimse=dimse, url=args.url, store_url=args.store_url,
                         attempts=args.attempts)
    query = StudyQuery(study_uids=tuple(args.study_uid or ()), date=args.date or "", modality=args.modality or "")
    status, report = run_pacs(config, query, args.output, options)
    studies = report["studies"].values()
    print(f"{len(report['studies'])} studies; {sum(s.get('sent', 0) for s in studies)} instances sent, "
          f"{sum(s.get('send_failed', 0) for s in studies)} failed; send logs in {args.output / 'send'}")
    return int(status)


def cmd_demo(args: argparse.Namespace) -> int:
    from medseg.demo import run_demo

    return run_demo(args.output, quiet=args.quiet, options=pipeline_config(args).run_options())


def cmd_export(args: argparse.Namespace) -> int:
    """Checkpoint -> ONNX model + model.json (and the fp16 variant). Needs torch (training extra)."""
    pipeline_config(args)
    inputs = _inputs(args)
    if len(inputs) != 1:
        raise InputError("medseg export: give one checkpoint")
    validation = None
    if args.validation:
        try:
            validation = json.loads(args.validation.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"--validation {args.validation}: not JSON ({exc})") from exc
        if not isinstance(validation, dict):
            raise InputError(f"--validation {args.validation}: expected a JSON object")
    from medseg.segment.export import export_fp16_variant, export_onnx  # imports torch

    onnx_path, contract_path, max_diff = export_onnx(inputs[0], args.output, name=args.name,
                                                     validation=validation)
    log.info("ONNX Runtime vs torch: max |difference| %.2e", max_diff)
    print(onnx_path)
    print(contract_path)
    if not args.no_fp16:
        entry = export_fp16_variant(contract_path)
        print(Path(args.output) / entry["file"])
    return EXIT_OK


# --- The parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description=(__doc__ or "medseg").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="list the studies and series found under files/folders")
    add_flags(info, "input")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=cmd_info)

    convert = sub.add_parser("convert", help="write one NIfTI file per series")
    add_flags(convert, "input", "output")
    convert.set_defaults(func=cmd_convert)

    stitch = sub.add_parser("stitch", help="compose multi-station spine series into one image")
    _flag_input(stitch, text="study folders, DICOM files or NIfTI stations")
    add_flags(stitch, "output", "device")
    stitch.add_argument("--series", action="append", metavar="KEY",
                        help="use these series as the stations (key, UID or number; repeat)")
    stitch.add_argument("--reference", default=None,
                        help="station that keeps its geometry: head, foot or an index (head=0; default: "
                             "the config's stitch.reference, head)")
    stitch.add_argument("--no-register", action="store_true", help="skip registration refinement")
    stitch.add_argument("--rigid", action="store_true", help="also search small rotations")
    stitch.add_argument("--max-shift", type=float, default=None, metavar="MM",
                        help="the plausible table error: reject registration corrections larger "
                             "than this (default: stitch.max_shift_mm, 8 mm)")
    stitch.add_argument("--intensity", choices=["gain", "constant", "linear", "none"], default=None,
                        help="default: stitch.intensity, gain")
    stitch.add_argument("--blend", choices=["feather", "multiband"], default=None,
                        help="default: stitch.blend, feather")
    stitch.add_argument("--no-dicom", action="store_true", help="do not write the DICOM series")
    stitch.set_defaults(func=cmd_stitch)

    pre = sub.add_parser("preprocess", help="bias-corrected image, bias field and brain mask (NIfTI)")
    add_flags(pre, "input", "output", "device", "precision")
    pre.add_argument("--fast", action="store_true", help="fast N4 (fewer iterations, coarser shrink); "
                     "default: the full profile, or the config's n4 section when -c is given")
    pre.add_argument("--no-skullstrip", action="store_true", help="bias correction only")
    pre.set_defaults(func=cmd_preprocess)

    for name, func, text in (("segment", cmd_segment, "corpus callosum mask (NIfTI, input grid)"),
                             ("position", cmd_position, "angles, axial plan, CC measurements, QC")):
        p = sub.add_parser(name, help=text)
        add_flags(p, "input", "output", "device", "precision")
        p.add_argument("--no-n4", action="store_true", help="skip bias-field correction")
        if name == "position":
            p.add_argument("--no-skullstrip", action="store_true", help="leave out the brain mask")
            p.add_argument("--max-difference", type=float, default=None, metavar="DEG",
                           help="flag results whose box and line angles differ more "
                                "(default: positioning.max_difference_deg, 10)")
        p.set_defaults(func=func)

    runner = sub.add_parser("run", help="the batch job: route every study, write results and reports")
    add_flags(runner, "input", "output", "device", "precision", "jobs", "report")
    runner.add_argument("--resume", action="store_true",
                        help="skip finished studies (ok, partial, skipped); redo failed and unfinished ones")
    runner.add_argument("--resume-skip-failed", action="store_true",
                        help="like --resume, but keep failed studies as they are")
    runner.add_argument("--max-memory", metavar="SIZE",
                        help="memory cap of the run (e.g. 16G, 40%%; default 50%% of the RAM): a series "
                             "estimated to need more fails with ResourceLimitError")
    runner.add_argument("--shard", default=None, metavar="I/N", help="process only shard I of N (by study UID)")
    runner.add_argument("--no-n4", action="store_true", help="skip bias-field correction")
    runner.add_argument("--no-skullstrip", action="store_true", help="leave out the brain masks")
    runner.add_argument("--engine", choices=["local", "dask"], default=None,
                        help="local: worker threads in this process (default); dask: one task per study "
                             "on a Dask cluster")
    runner.add_argument("--scheduler", metavar="ADDRESS", help="dask: address of a running Dask scheduler")
    runner.add_argument("--cluster", metavar="local:N|slurm|pbs",
                        help="dask: start a cluster (default local:2; slurm/pbs through dask-jobqueue)")
    runner.add_argument("--dask-config", type=Path, metavar="YAML",
                        help="dask: DaskOptions (retries, jobqueue resources: queue, cores, memory, walltime, gpus)")
    runner.add_argument("--dicom-out", action=argparse.BooleanOptionalAction, default=None,
                        help="write DICOM SEG, SR and secondary captures for DICOM input (default: on)")
    runner.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild summary.csv/json and index.html of an output folder")
    report.add_argument("inputs", nargs="*", type=Path, metavar="OUT", help="output folder of medseg run")
    report.add_argument("-i", "--input", dest="input", action="extend", nargs="+", type=Path, default=[],
                        metavar="OUT", help="output folder of medseg run (read, and rebuilt in place)")
    report.add_argument("-o", "--output", type=Path, metavar="OUT", help="the same folder (either spelling)")
    add_flags(report)
    report.set_defaults(func=cmd_report)

    listen = sub.add_parser("listen", help="DICOM node: receive series by C-STORE, position/compose them "
                            "as they arrive")
    add_flags(listen, "output", "device", "precision")
    listen.add_argument("--port", type=int, default=11112, help="TCP port (default 11112)")
    listen.add_argument("--host", default="0.0.0.0", help="address to listen on (default all)")
    listen.add_argument("--ae-title", default="MEDSEG", help="this node's AE title (default MEDSEG)")
    listen.add_argument("--allow", action="append", metavar="AE_TITLE",
                        help="accept associations only from this calling AE title (repeat; default any)")
    listen.add_argument("--spool", type=Path, help="where received files are kept (default OUT/.spool)")
    listen.add_argument("--complete-on", choices=["association", "quiet"], default="association",
                        help="a series is complete when its association is released (default), or "
                             "after --quiet-seconds without a new file of its study")
    listen.add_argument("--quiet-seconds", type=float, default=2.0, metavar="S",
                        help="quiet period (also for aborted associations; default 2)")
    listen.add_argument("--queue", type=int, default=4, metavar="N",
                        help="studies waiting to be processed before C-STOREs are refused (default 4)")
    listen.add_argument("--send-to", metavar="AE@HOST:PORT", help="send the results there with C-STORE")
    listen.add_argument("--health-seconds", type=float, default=60.0, metavar="S",
                        help="log a health line and write OUT/health.json this often (default 60)")
    listen.add_argument("--no-n4", action="store_true", help="skip bias-field correction")
    listen.add_argument("--no-skullstrip", action="store_true", help="leave out the brain masks")
    listen.set_defaults(func=cmd_listen)

    pacs = sub.add_parser("pacs", help="query a PACS (DICOMweb or DIMSE), run the batch, store the DICOM results back")
    add_flags(pacs, "output", "device", "precision")
    pacs.add_argument("--url", help="DICOMweb base URL (QIDO-RS/WADO-RS); credentials from "
                      "MEDSEG_PACS_USERNAME/MEDSEG_PACS_PASSWORD or the PACS config, never here")
    pacs.add_argument("--store-url", help="STOW-RS base URL (default: --url)")
    pacs.add_argument("--dimse", metavar="AE@HOST:PORT", help="a DIMSE peer instead of --url "
                      "(C-FIND, C-GET/C-MOVE, C-STORE)")
    pacs.add_argument("--retrieve", choices=("get", "move"), help="DIMSE retrieve: C-GET (default) or "
                      "C-MOVE to our own Storage SCP (needs move_port in the config's dimse block)")
    pacs.add_argument("--calling-ae", metavar="AE", help="our AE title for DIMSE (default MEDSEG)")
    pacs.add_argument("--pacs-config", type=Path, metavar="YAML",
                      help="PACS settings (url, store_url, username, password, timeout_s, attempts, "
                           "backoff_s; or a dimse block: peer, calling_ae, retrieve, move_ae, move_port, "
                           "move_bind, store)")
    pacs.add_argument("--study-uid", action="append", metavar="UID", help="this study (repeat)")
    pacs.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]", help="StudyDate or range")
    pacs.add_argument("--modality", help="ModalitiesInStudy, e.g. MR")
    pacs.add_argument("--attempts", type=int, help="tries per stored instance (default 3)")
    pacs.add_argument("--no-skullstrip", action="store_true", help="leave out the brain masks")
    pacs.set_defaults(func=cmd_pacs)

    demo = sub.add_parser("demo", help="generate a demo study and run medseg on it")
    add_flags(demo, "output", "device", "precision")
    demo.set_defaults(func=cmd_demo)

    export = sub.add_parser("export", help="a trained checkpoint -> ONNX model + model.json contract "
                            "(+ fp16 variant); needs torch")
    _flag_input(export, metavar="CHECKPOINT", text="the training checkpoint (.pt)")
    add_flags(export, "output")
    export.add_argument("--name", default="cc_attention_unet", help="model name: NAME.onnx, NAME.json "
                        "(default cc_attention_unet)")
    export.add_argument("--validation", type=Path, metavar="EVAL_JSON",
                        help="validation metrics (JSON object) recorded in the contract")
    export.add_argument("--no-fp16", action="store_true", help="do not write the fp16 variant")
    export.set_defaults(func=cmd_export)
    return parser


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, by name."""
    parser = parser or build_parser()
    for action in parser._actions:  # argparse offers no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    _setup_logging(args)
    try:
        if getattr(args, "output", None) is not None and args.func is not cmd_report:
            from medseg.io.atomic import ensure_output_dir

            ensure_output_dir(args.output)  # an existing file or an unwritable folder: one line, now
        return int(args.func(args))
    except MedsegError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    except OSError as exc:  # disk full, permissions...: the errno is kept
        log.error("%s", os_error_message(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # a bug: one line, the traceback with -v
        log.error("%s", _one_line(exc))
        return EXIT_FAILED


def entry() -> None:
    """The ``medseg`` console script: :func:`main`, then the exit.

    When only the main thread is left, the exit handlers run (temporary folders, logging) and
    the process ends without the interpreter's teardown, which frees every loaded extension
    module one by one: about 0.3 s of a fresh ``medseg position`` (pipelines/benchmark_latency.py).
    Every output is written and closed before :func:`main` returns."""
    code = main()
    if threading.active_count() == 1:
        import atexit

        atexit._run_exitfuncs()  # what a normal exit runs first (CPython's own hook, no public twin)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
