"""The ``medseg`` command: parses arguments and calls the library; no image logic lives here.

Exit status: 0 all inputs succeeded; 1 some studies/series failed (each recorded, the rest done);
2 bad usage, an unusable output, or nothing succeeded. ``medseg run`` follows the same codes per
study, and exits 130/143 when stopped by SIGINT/SIGTERM. Every error is one line on stderr (a
traceback only with ``-v``, for bugs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from medseg import __version__
from medseg.errors import InputError, MedsegError, os_error_message

log = logging.getLogger("medseg")

EXIT_OK, EXIT_PARTIAL, EXIT_FAILED = 0, 1, 2


def _add_common(parser: argparse.ArgumentParser, *, output: bool = False) -> None:
    if output:
        parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "tensorrt"], default="cpu",
                        help="onnxruntime providers: auto = TensorRT -> CUDA -> CPU, whichever loads")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                        help="model variant (fp16: for GPUs; listed in each model.json)")


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_info(args: argparse.Namespace) -> int:
    from medseg.io import scan

    result = scan(args.inputs, show_progress=not args.quiet)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        _print_info(result)
    if not result.series:
        log.error("no image series found under %s", ", ".join(map(str, args.inputs)))
        return EXIT_FAILED
    return EXIT_PARTIAL if result.errors or any(not s.ok for s in result.series) else EXIT_OK


def _print_info(result) -> None:
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
    for path, error in result.errors:
        print(f"error: {error}")


def cmd_convert(args: argparse.Namespace) -> int:
    from medseg.io import scan, write_nifti

    result = scan(args.inputs, show_progress=not args.quiet)
    if not result.series:
        log.error("no image series found under %s", ", ".join(map(str, args.inputs)))
        return EXIT_FAILED
    from medseg.io.atomic import unique_names

    failures = len(result.errors)
    names = unique_names([(ref.name, ref.key) for ref in result.series])
    converted = 0
    for ref, name in zip(result.series, names):
        target = args.output / f"{name}.nii.gz"
        try:
            volume = ref.load()
            write_nifti(volume, target)
        except (MedsegError, OSError) as exc:
            failures += 1
            log.error("series %s not converted: %s", ref.key, _one_line(exc))
            continue
        converted += 1
        print(target)
    return EXIT_FAILED if not converted else EXIT_PARTIAL if failures else EXIT_OK


def cmd_stitch(args: argparse.Namespace) -> int:
    from medseg.io import scan
    from medseg.spine import StitchOptions, compose, find_station_sets
    from medseg.spine.outputs import write_stitch_outputs

    result = scan(args.inputs, show_progress=not args.quiet)
    refs = result.series
    broken = [r for r in refs if not r.ok]  # a damaged station is never left out silently
    for ref in broken:
        log.error("%s (%s): %s", ref.name, type(ref.error).__name__, _one_line(ref.error))
    if args.series:
        wanted = set(args.series)
        refs = [r for r in refs if {r.key, r.series_uid, str(r.series_number)} & wanted]
        sets = [refs] if refs else []
    elif refs and all(r.kind == "nifti" for r in refs):
        sets = [refs]  # NIfTI files given explicitly are the stations
    else:
        sets = find_station_sets(refs)
    if not sets:
        log.error("no composing set found (need 2+ sagittal/coronal series of one sequence that "
                  "overlap head-foot); pass --series to choose stations explicitly")
        return EXIT_FAILED
    reference: str | int = args.reference
    if isinstance(reference, str) and reference.isdigit():
        reference = int(reference)
    options = StitchOptions(register=not args.no_register, rigid=args.rigid,
                            max_shift_mm=args.max_shift, reference=reference,
                            intensity=args.intensity, blend=args.blend, device=args.device,
                            backend="auto" if args.device == "auto" else
                            ("sitk" if args.device == "cpu" else "torch"))
    failures, done = len(broken), 0
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


def _one_line(exc: BaseException) -> str:
    """A one-line description of an error: medseg's message, a file-system error with its errno,
    or the type and message of an unexpected exception (a bug: the traceback goes to -v)."""
    if isinstance(exc, MedsegError):
        return str(exc)
    if isinstance(exc, OSError):
        return os_error_message(exc)
    log.debug("traceback", exc_info=exc)
    return f"internal error ({type(exc).__name__}: {exc}); run with -v for the traceback"


def _brain_series(result):
    """Series a brain stage can use: 3D volumes and sagittal stacks (3D, one volume)."""
    from medseg.batch.routing import is_brain_image

    for ref in result.series:
        if ref.affine is None or not ref.ok or len(ref.shape) != 3:
            continue
        if is_brain_image(ref.affine, ref.shape):
            yield ref


def _image_series(result):
    """Every series that loads as one 3D image (any orientation)."""
    for ref in result.series:
        if ref.affine is not None and ref.ok and len(ref.shape) == 3:
            yield ref


def _run_per_series(args, work, select=_brain_series) -> int:
    """Apply ``work(ref, volume, out_dir)`` to each usable series; errors recorded, run goes on."""
    from medseg.io import scan

    result = scan(args.inputs, show_progress=not args.quiet)
    # a damaged or invalid series (or another modality) is a failure of its own, never left out
    # silently; the others still run
    failures = 0
    for ref in result.series:
        if not ref.ok:
            failures += 1
            log.error("%s (%s): %s", ref.name, type(ref.error).__name__, _one_line(ref.error))
    refs = []
    for ref in select(result):
        if ref.kind == "dicom" and ref.modality and ref.modality.upper() != "MR":
            failures += 1
            log.error("%s: modality %s (medseg handles MR)", ref.name, ref.modality)
        else:
            refs.append(ref)
    if not refs:
        log.error("no usable image series found under %s", ", ".join(map(str, args.inputs)))
        return EXIT_FAILED
    from medseg.io.atomic import unique_names

    done = 0
    names = unique_names([(ref.name, ref.key) for ref in refs])
    for ref, name in zip(refs, names):
        out = args.output if len(refs) == 1 else args.output / name
        try:
            for path in work(ref, ref.load(), out):
                print(path)
            done += 1
        except Exception as exc:  # one series' failure (or bug) is reported; the others go on
            failures += 1
            log.error("%s (%s): %s", name, type(exc).__name__, _one_line(exc))
    return EXIT_FAILED if failures and not done else EXIT_PARTIAL if failures else EXIT_OK


def cmd_segment(args: argparse.Namespace) -> int:
    from medseg.io import write_nifti
    from medseg.preprocess import N4Options, correct_bias_field
    from medseg.segment.infer import CCSegmenter

    segmenter = CCSegmenter(device=args.device, precision=args.precision)

    def work(ref, volume, out):
        corrected = correct_bias_field(volume, options=N4Options.fast())[0] if not args.no_n4 else volume
        seg = segmenter.segment(corrected)
        where = (f"slice {seg.slice_index}" if seg.kind == "localizer" else
                 "plane through " + ", ".join(f"{v:.1f}" for v in seg.midsagittal_point) + " mm, normal "
                 + ", ".join(f"{v:.3f}" for v in seg.midsagittal_normal))
        log.info("%s: CC %.0f mm2 on the mid-sagittal %s", ref.name, seg.area_mm2, where)
        return [write_nifti(seg.mask, out / "cc_mask.nii.gz")]

    return _run_per_series(args, work)


def cmd_preprocess(args: argparse.Namespace) -> int:
    from medseg.pipeline import preprocess_volume, write_preprocess_outputs
    from medseg.preprocess.skullstrip import SkullStripper

    stripper = SkullStripper(device=args.device, precision=args.precision) if not args.no_skullstrip else None

    def work(ref, volume, out):
        result = preprocess_volume(volume, stripper, n4="fast" if args.fast else "default")
        paths = write_preprocess_outputs(result, out)
        if result.error:
            raise result.error
        log.info("%s: brain %.0f ml; N4 %.1f s, skull stripping %.1f s", ref.name,
                 result.brain.volume_ml if result.brain else float("nan"), result.seconds.get("n4", 0.0),
                 result.seconds.get("skullstrip", 0.0))
        return list(paths.values())

    return _run_per_series(args, work, select=_image_series)


def cmd_position(args: argparse.Namespace) -> int:
    from medseg.positioning.pipeline import position_volume, write_position_outputs
    from medseg.segment.infer import CCSegmenter

    segmenter = CCSegmenter(device=args.device, precision=args.precision)
    stripper = None
    if not args.no_skullstrip:
        from medseg.preprocess.skullstrip import SkullStripper

        stripper = SkullStripper(device=args.device, precision=args.precision)

    def work(ref, volume, out):
        result = position_volume(volume, segmenter, n4=not args.no_n4,
                                 max_difference_deg=args.max_difference, stripper=stripper)
        final = result.localization.final
        log.info("%s: final angle %+.1f deg (box %+.1f, line %+.1f)%s", ref.name, final.angle_deg,
                 result.localization.box.angle_deg, result.localization.line.angle_deg,
                 "" if result.localization.consistent else " - box and line disagree")
        return list(write_position_outputs(result, out).values())

    return _run_per_series(args, work)


def cmd_run(args: argparse.Namespace) -> int:
    from medseg.batch.run import RunOptions, default_max_memory, parse_size, run
    from medseg.io.atomic import check_output_file, write_text_atomic

    try:
        index, count = (int(v) for v in args.shard.split("/"))
        if not 1 <= index <= count:
            raise ValueError
    except ValueError:
        log.error("--shard must be i/n with 1 <= i <= n, got %r", args.shard)
        return EXIT_FAILED
    try:
        max_memory = parse_size(args.max_memory) if args.max_memory else default_max_memory()
    except ValueError as exc:
        log.error("--max-memory: %s", exc)
        return EXIT_FAILED
    if args.jobs < 1:
        log.error("--jobs must be at least 1, got %d", args.jobs)
        return EXIT_FAILED
    if args.report:
        check_output_file(args.report)  # before the run, not after hours of work
    options = RunOptions(device=args.device, precision=args.precision, jobs=args.jobs,
                         resume=args.resume or args.resume_skip_failed, resume_skip_failed=args.resume_skip_failed,
                         shard=(index, count), max_memory=max_memory,
                         n4=not args.no_n4, skull_strip=not args.no_skullstrip, quiet=args.quiet,
                         engine=args.engine, dask=_dask_options(args), dicom_out=args.dicom_out)
    status, report = run(args.input, args.output, options)
    if args.report:
        write_text_atomic(args.report, json.dumps(report, indent=2))
    stopped = f"stopped by {report['interrupted']}: " if report["interrupted"] else ""
    print(f"{stopped}{report['studies']} studies ({report['resumed_studies']} kept from earlier runs), "
          f"{report['partial_studies']} partial, {report['failed_studies']} failed"
          + (f", {report['not_started']} not started" if report["not_started"] else "")
          + f"; see {args.output / 'index.html'} and {args.output / 'summary.csv'}")
    return status


def _dask_options(args: argparse.Namespace):
    """DaskOptions from --dask-config, overridden by --scheduler/--cluster; None for the local engine."""
    if args.engine != "dask":
        if args.scheduler or args.cluster or args.dask_config:
            raise InputError("--scheduler, --cluster and --dask-config need --engine dask")
        return None
    import dataclasses

    from medseg.batch.dask_engine import DaskOptions
    from medseg.config import load_config

    options = load_config(args.dask_config, DaskOptions) if args.dask_config else DaskOptions()
    changes = {k: v for k, v in (("scheduler", args.scheduler), ("cluster", args.cluster)) if v}
    changes["gpu_resource"] = options.gpu_resource or args.device in ("cuda", "tensorrt")
    return dataclasses.replace(options, **changes)


def cmd_report(args: argparse.Namespace) -> int:
    from medseg.batch.report import rebuild, status_counts

    if not args.output.is_dir():
        log.error("%s is not a medseg output folder", args.output)
        return EXIT_FAILED
    studies = rebuild(args.output)
    counts = status_counts(studies)
    print(f"{len(studies)} studies: " + ", ".join(f"{n} {k}" for k, n in counts.items())
          + f"; see {args.output / 'index.html'} and {args.output / 'summary.csv'}")
    return EXIT_FAILED if not (counts["ok"] or counts["partial"]) else \
        EXIT_PARTIAL if counts["failed"] or counts["partial"] else EXIT_OK

def cmd_listen(args: argparse.Namespace) -> int:
    from medseg.listen import Destination, Listener, ListenOptions

    try:
        destination = Destination.parse(args.send_to) if args.send_to else None
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    options = ListenOptions(output=args.output, spool=args.spool, host=args.host, port=args.port,
                            ae_title=args.ae_title, allowed_callers=tuple(args.allow or ()),
                            complete_on=args.complete_on, quiet_seconds=args.quiet_seconds,
                            queue_size=args.queue, send_to=destination, device=args.device,
                            precision=args.precision, n4=not args.no_n4, skull_strip=not args.no_skullstrip,
                            health_seconds=args.health_seconds)
    return Listener(options).serve()


def cmd_pacs(args: argparse.Namespace) -> int:
    from medseg.batch.run import RunOptions
    from medseg.pacs import StudyQuery, load_config, run_pacs

    dimse = {"peer": args.dimse, "retrieve": args.retrieve, "calling_ae": args.calling_ae}
    config = load_config(args.config, dimse=dimse, url=args.url, store_url=args.store_url, attempts=args.attempts)
    query = StudyQuery(study_uids=tuple(args.study_uid or ()), date=args.date or "", modality=args.modality or "")
    options = RunOptions(device=args.device, precision=args.precision, quiet=args.quiet,
                         skull_strip=not args.no_skullstrip)
    status, report = run_pacs(config, query, args.output, options)
    studies = report["studies"].values()
    print(f"{len(report['studies'])} studies; {sum(s.get('sent', 0) for s in studies)} instances sent, "
          f"{sum(s.get('send_failed', 0) for s in studies)} failed; send logs in {args.output / 'send'}")
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from medseg.demo import run_demo

    return run_demo(args.output, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="list the studies and series found under files/folders")
    info.add_argument("inputs", nargs="+", type=Path, metavar="PATH")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_common(info)
    info.set_defaults(func=cmd_info)

    convert = sub.add_parser("convert", help="write one NIfTI file per series")
    convert.add_argument("inputs", nargs="+", type=Path, metavar="PATH")
    _add_common(convert, output=True)
    convert.set_defaults(func=cmd_convert)

    stitch = sub.add_parser("stitch", help="compose multi-station spine series into one image")
    stitch.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="study folders, DICOM files or NIfTI stations")
    stitch.add_argument("--series", action="append", metavar="KEY",
                        help="use these series as the stations (key, UID or number; repeat)")
    stitch.add_argument("--reference", default="head",
                        help="station that keeps its geometry: head, foot or an index (head=0)")
    stitch.add_argument("--no-register", action="store_true", help="skip registration refinement")
    stitch.add_argument("--rigid", action="store_true", help="also search small rotations")
    stitch.add_argument("--max-shift", type=float, default=8.0, metavar="MM",
                        help="the plausible table error: reject registration corrections larger "
                             "than this (default 8 mm)")
    stitch.add_argument("--intensity", choices=["gain", "linear", "none"], default="gain")
    stitch.add_argument("--blend", choices=["feather", "multiband"], default="feather")
    stitch.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: torch on CUDA when a GPU is present, else SimpleITK on CPU")
    stitch.add_argument("--no-dicom", action="store_true", help="do not write the DICOM series")
    _add_common(stitch, output=True)
    stitch.set_defaults(func=cmd_stitch)

    pre = sub.add_parser("preprocess", help="bias-corrected image, bias field and brain mask (NIfTI)")
    pre.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    _add_device(pre)
    pre.add_argument("--fast", action="store_true", help="fast N4 (fewer iterations, coarser shrink)")
    pre.add_argument("--no-skullstrip", action="store_true", help="bias correction only")
    _add_common(pre, output=True)
    pre.set_defaults(func=cmd_preprocess)

    for name, func, text in (("segment", cmd_segment, "corpus callosum mask (NIfTI, input grid)"),
                             ("position", cmd_position, "angles, axial plan, CC measurements, QC")):
        p = sub.add_parser(name, help=text)
        p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
        _add_device(p)
        p.add_argument("--no-n4", action="store_true", help="skip bias-field correction")
        if name == "position":
            p.add_argument("--no-skullstrip", action="store_true", help="leave out the brain mask")
            p.add_argument("--max-difference", type=float, default=10.0, metavar="DEG",
                           help="flag results whose box and line angles differ more (default 10)")
        _add_common(p, output=True)
        p.set_defaults(func=func)

    runner = sub.add_parser("run", help="the batch job: route every study, write results and reports")
    runner.add_argument("-i", "--input", nargs="+", required=True, type=Path, metavar="INPUT")
    _add_device(runner)
    runner.add_argument("-j", "--jobs", type=int, default=1, help="studies loaded/bias-corrected ahead in parallel")
    runner.add_argument("--resume", action="store_true",
                        help="skip finished studies (ok, partial, skipped); redo failed and unfinished ones")
    runner.add_argument("--resume-skip-failed", action="store_true",
                        help="like --resume, but keep failed studies as they are")
    runner.add_argument("--max-memory", metavar="SIZE",
                        help="memory cap of the run (e.g. 16G, 40%%; default 50%% of the RAM): a series "
                             "estimated to need more fails with ResourceLimitError")
    runner.add_argument("--shard", default="1/1", metavar="I/N", help="process only shard I of N (by study UID)")
    runner.add_argument("--no-n4", action="store_true", help="skip bias-field correction")
    runner.add_argument("--no-skullstrip", action="store_true", help="leave out the brain masks")
    runner.add_argument("--report", type=Path, metavar="RUN_JSON", help="also write the run report here")
    runner.add_argument("--engine", choices=["local", "dask"], default="local",
                        help="local: worker threads in this process; dask: one task per study on a Dask cluster")
    runner.add_argument("--scheduler", metavar="ADDRESS", help="dask: address of a running Dask scheduler")
    runner.add_argument("--cluster", metavar="local:N|slurm|pbs",
                        help="dask: start a cluster (default local:2; slurm/pbs through dask-jobqueue)")
    runner.add_argument("--dask-config", type=Path, metavar="YAML",
                        help="dask: DaskOptions (retries, jobqueue resources: queue, cores, memory, walltime, gpus)")
    runner.add_argument("--dicom-out", action=argparse.BooleanOptionalAction, default=True,
                        help="write DICOM SEG, SR and secondary captures for DICOM input (default: on)")
    _add_common(runner, output=True)
    runner.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild summary.csv/json and index.html of an output folder")
    report.add_argument("output", type=Path, metavar="OUT", help="output folder of medseg run")
    _add_common(report)
    report.set_defaults(func=cmd_report)

    listen = sub.add_parser("listen", help="DICOM node: receive series by C-STORE, position/compose them as they arrive")
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
    _add_device(listen)
    listen.add_argument("--no-n4", action="store_true", help="skip bias-field correction")
    listen.add_argument("--no-skullstrip", action="store_true", help="leave out the brain masks")
    _add_common(listen, output=True)
    listen.set_defaults(func=cmd_listen)

    pacs = sub.add_parser("pacs", help="query a PACS (DICOMweb or DIMSE), run the batch, store the DICOM results back")
    pacs.add_argument("--url", help="DICOMweb base URL (QIDO-RS/WADO-RS); credentials from "
                      "MEDSEG_PACS_USERNAME/MEDSEG_PACS_PASSWORD or the config file, never here")
    pacs.add_argument("--store-url", help="STOW-RS base URL (default: --url)")
    pacs.add_argument("--dimse", metavar="AE@HOST:PORT", help="a DIMSE peer instead of --url "
                      "(C-FIND, C-GET/C-MOVE, C-STORE)")
    pacs.add_argument("--retrieve", choices=("get", "move"), help="DIMSE retrieve: C-GET (default) or "
                      "C-MOVE to our own Storage SCP (needs move_port in the config's dimse block)")
    pacs.add_argument("--calling-ae", metavar="AE", help="our AE title for DIMSE (default MEDSEG)")
    pacs.add_argument("-c", "--config", type=Path, help="YAML settings (url, store_url, username, password, "
                      "timeout_s, attempts, backoff_s; or a dimse block: peer, calling_ae, retrieve, "
                      "move_ae, move_port, move_bind, store)")
    pacs.add_argument("--study-uid", action="append", metavar="UID", help="this study (repeat)")
    pacs.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]", help="StudyDate or range")
    pacs.add_argument("--modality", help="ModalitiesInStudy, e.g. MR")
    pacs.add_argument("--attempts", type=int, help="tries per stored instance (default 3)")
    pacs.add_argument("--no-skullstrip", action="store_true", help="leave out the brain masks")
    _add_device(pacs)
    _add_common(pacs, output=True)
    pacs.set_defaults(func=cmd_pacs)

    demo = sub.add_parser("demo", help="generate a demo study and run medseg on it")
    _add_common(demo, output=True)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        if getattr(args, "output", None) is not None and args.func is not cmd_report:
            from medseg.io.atomic import ensure_output_dir

            ensure_output_dir(args.output)  # an existing file or an unwritable folder: one line, now
        return args.func(args)
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


if __name__ == "__main__":
    sys.exit(main())
