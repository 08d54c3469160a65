"""Export a trained checkpoint as a shipped model: ONNX, its fp16 variant and the ``model.json``
contract, with the validation block of an evaluation.

1. ``name.onnx`` and ``name.json`` (:func:`medseg.segment.export.export_onnx`: ORT/torch parity
   checked, training's grid, crop and normalisation written into the contract).
2. ``name.fp16.onnx``, listed under ``variants.fp16`` with its measured difference from fp32
   (:func:`medseg.segment.export.export_fp16_variant`).
3. The contract's ``validation`` block is the ``validation`` entry of an evaluation JSON written by
   ``pipelines/evaluate_cc.py`` (CC) or ``pipelines/evaluate_skullstrip.py`` (brain); without
   ``--evaluation`` it records the checkpoint's validation Dice.

The contract is loaded back as a :class:`~medseg.infer.contract.ModelContract`, the model file is
checked against its sha256 and onnxruntime runs it once before the paths are printed.

The evaluation measures an exported model (it records that model's sha256). Exporting the same
checkpoint again with the same torch gives the same file; when the sha256 differs (another torch,
another checkpoint) the figures are still copied and a warning says so.

Several ``--checkpoint`` files (runs fine-tuned from the same start) are averaged into one
network (:func:`medseg.segment.export.average_checkpoints`); the contract says so.

``--interpolate A`` (one fine-tuned checkpoint) exports ``(1 - A) x`` the weights it started
from ``+ A x`` its own (:func:`medseg.segment.export.interpolate_with_start`, WiSE-FT); ``--start``
names the starting file when ``train.init_from`` now holds another (the run's recorded sha256
must match it).

Usage: python pipelines/export.py --checkpoint runs/cc/best.pt [more.pt ...] --name cc_attention_unet \\
           --evaluation eval_out/evaluation.json --out models
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from medseg.infer.contract import ModelError, check_model_file, load_contract
from medseg.segment.export import export_fp16_variant, export_onnx

log = logging.getLogger("medseg.export")


def read_validation(evaluation: Path, name: str) -> tuple[dict, str | None]:
    """(validation block, sha256 of the model evaluated) of an evaluation JSON.

    Raises:
        ModelError: the file has no ``validation`` entry, or evaluated another model.
    """
    report = json.loads(Path(evaluation).read_text(encoding="utf-8"))
    if "validation" not in report:
        raise ModelError(f"{evaluation}: no 'validation' entry (written by pipelines/evaluate_cc.py "
                         "or pipelines/evaluate_skullstrip.py)")
    if report.get("model") not in (None, name):
        raise ModelError(f"{evaluation}: evaluates model {report['model']!r}, not {name!r}")
    return report["validation"], report.get("sha256")


def export_model(checkpoint: Path | list[Path], out_dir: Path, name: str, *, evaluation: Path | None = None,
                 fp16: bool = True, interpolate: float | None = None, start: Path | None = None) -> dict[str, Path]:
    """Write the model files of ``checkpoint`` under ``out_dir``; returns their paths.

    Raises:
        ModelError: the evaluation is not one of this model, or the exported files do not load
            and run as their contract says.
    """
    import onnxruntime as ort

    validation, evaluated_sha = read_validation(evaluation, name) if evaluation else (None, None)
    onnx_path, contract_path, parity = export_onnx(checkpoint, out_dir, name=name, validation=validation,
                                                   interpolate=interpolate, start=start)
    log.info("%s: max |ORT - torch| %.2e", onnx_path, parity)
    paths = {"onnx": onnx_path, "contract": contract_path}
    if fp16:
        entry = export_fp16_variant(contract_path)
        paths["fp16"] = contract_path.parent / entry["file"]
        log.info("%s: max |fp16 - fp32| logit %.3g, label change %.2g", paths["fp16"],
                 entry["max_abs_logit_diff_vs_fp32"], entry["label_change_fraction_vs_fp32"])
    contract = load_contract(contract_path)  # what inference will read
    if evaluated_sha and evaluated_sha != contract.sha256:
        log.warning("the evaluation measured the model with sha256 %s..., the exported file is %s...: "
                    "re-run the evaluation on the exported model", evaluated_sha[:12], contract.sha256[:12])
    for precision in ("fp32", "fp16") if fp16 else ("fp32",):
        path = check_model_file(contract, out_dir, precision)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        size = contract.input.size
        out = session.run([contract.output.name],
                          {contract.input.name: np.zeros((1, 1, size, size), np.float32)})[0]
        if out.shape != (1, len(contract.output.labels), size, size):
            raise ModelError(f"{path}: output shape {out.shape} does not match the contract's labels")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, nargs="+",
                        help="best.pt of a training run, or several runs fine-tuned from the same "
                             "start, whose weights are averaged")
    parser.add_argument("--name", required=True, help="model name (cc_attention_unet, skullstrip_attention_unet)")
    parser.add_argument("--evaluation", type=Path, default=None,
                        help="evaluation.json of pipelines/evaluate_cc.py or evaluate_skullstrip.py")
    parser.add_argument("-o", "--out", type=Path, default=Path("models"))
    parser.add_argument("--no-fp16", action="store_true", help="do not write the fp16 variant")
    parser.add_argument("--interpolate", type=float, default=None, metavar="A",
                        help="export (1 - A) x the starting weights + A x the fine-tuned checkpoint's")
    parser.add_argument("--start", type=Path, default=None,
                        help="the file the run started from, when train.init_from now holds another")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        checkpoint = args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint
        paths = export_model(checkpoint, args.out, args.name, evaluation=args.evaluation,
                             fp16=not args.no_fp16, interpolate=args.interpolate, start=args.start)
    except (ModelError, ValueError) as exc:  # ValueError: checkpoints that cannot be averaged or interpolated
        log.error("%s", exc)
        return 1
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
