"""Training the 2D sagittal networks (corpus callosum, brain mask): typed config, checkpoints,
resume, per-epoch metrics, early stopping. One trainer serves both: they share the plane sampler,
the augmentation and the network family; ``data.target`` picks the label."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medseg.config import load_config
from medseg.io.atomic import sha256_file
from medseg.progress import progress
from medseg.segment.augment import AugmentConfig
from medseg.segment.data import PlanePose, Subject
from medseg.segment.dataset import PlaneSamples, validation_set
from medseg.segment.nets import ModelConfig, build_model
from medseg.segment.onnx_weights import freeze_batch_norm, load_matching_weights, load_onnx_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None  # default: $MEDSEG_DATA/brain/fs-training
    # Folder names under root (or paths relative to it, e.g. ../extra-aseg): each holds T1.mgz and
    # aseg.mgz, or aseg.mgz alone (a label-only subject, trained on images synthesised from it).
    train_subjects: tuple[str, ...] = ("sub-01", "sub-02", "sub-04", "sub-06", "sub-07")
    val_subjects: tuple[str, ...] = ("sub-08", "sub-09")
    image_size: int = 192
    spacing_mm: float = 1.25
    target: Literal["corpus_callosum", "brain"] = "corpus_callosum"


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 12
    iterations_per_epoch: int = 100
    epochs: int = 200
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # "cosine" over epochs x iterations; "cosine_time": over max_minutes of wall time (a fixed
    # compute budget: the rate is annealed to zero when the budget ends, however fast the machine)
    schedule: Literal["cosine", "constant", "cosine_time"] = "cosine"
    loss: Literal["dice_ce", "dice"] = "dice_ce"
    patience: int = 20  # epochs without validation improvement before stopping
    # "best": the checkpoint of the best validation epoch (the validation subjects then took part
    # in model selection and are not held out); "last": the weights at the end of the schedule,
    # validation only monitored, so the validation subjects stay held out for evaluation.
    select: Literal["best", "last"] = "best"
    max_minutes: float = 60.0
    seed: int = 0
    workers: int = 1
    threads: int = 0  # torch intra-op threads (0: torch default)
    output_dir: str = "runs/cc"
    # Start from a checkpoint's weights (.pt, same architecture) or from an exported model
    # (.onnx: its folded batch norms come back as the identity, so freeze_batch_norm is required)
    # instead of a random initialisation.
    init_from: str | None = None
    # Batch norms in evaluation mode, their parameters fixed (fine-tuning; required from .onnx).
    freeze_batch_norm: bool = False


@dataclass(frozen=True)
class TrainingConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def data_root(cfg: DataConfig) -> Path:
    if cfg.root:
        return Path(cfg.root)
    from medseg.examples import freesurfer_subjects_root

    return freesurfer_subjects_root()


VALIDATION_POSES = (PlanePose(), PlanePose(rotation_deg=20), PlanePose(rotation_deg=-20, slab_mm=5),
                    PlanePose(offset_mm=3, slab_mm=5), PlanePose(rotation_deg=-10), PlanePose(rotation_deg=30),
                    PlanePose(rotation_deg=-30), PlanePose(slab_mm=3), PlanePose(offset_mm=-3, slab_mm=4),
                    PlanePose(rotation_deg=10, slab_mm=6), PlanePose(tilt_lr_deg=5), PlanePose(tilt_si_deg=-5))
# Brain masks: planes across the whole head, some tilted, rotated and thick.
BRAIN_VALIDATION_POSES = tuple(
    PlanePose(offset_mm=o, rotation_deg=r, slab_mm=s, tilt_lr_deg=t)
    for o, r, s, t in [(-65, 0, 1, 0), (-50, 20, 1, 0), (-35, -25, 5, 5), (-20, 0, 3, 0), (-8, 10, 1, -8),
                       (0, 0, 1, 0), (0, 30, 5, 0), (6, -15, 1, 10), (20, 0, 1, 0), (35, 25, 4, -5),
                       (50, -10, 1, 0), (62, 0, 5, 0)])


def validation_poses(target: str) -> tuple[PlanePose, ...]:
    return BRAIN_VALIDATION_POSES if target == "brain" else VALIDATION_POSES


def dice(prediction: torch.Tensor, target: torch.Tensor) -> float:
    p, t = prediction.bool(), target.bool()
    denominator = p.sum() + t.sum()
    return 1.0 if denominator == 0 else float(2 * (p & t).sum() / denominator)


def evaluate(model: torch.nn.Module, samples) -> float:
    model.eval()
    scores = []
    with torch.no_grad():
        for image, label in samples:
            logits = model(image[None])
            scores.append(dice(logits.argmax(1)[0] == 1, label[0] > 0.5))
    model.train()
    return float(np.mean(scores)) if scores else float("nan")


def train(config: TrainingConfig, *, resume: bool = True, show_progress: bool = True) -> Path:
    """Train; returns the path of the best checkpoint. Writes metrics.jsonl per epoch."""
    cfg = config.train
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    root = data_root(config.data)
    synthesis = config.augment.synth_fraction > 0  # label maps for synthesis (a label-only subject has them)
    train_subjects = [Subject.load(root / name, synthesis=synthesis) for name in config.data.train_subjects]
    if config.data.target == "brain" and (synthesis or any(s.label_only for s in train_subjects)):
        # the synthesised brain edge follows the aseg, the target brainmask.mgz
        raise ValueError("brain-mask training takes scanned subjects only: no synth_fraction, "
                         "no label-only subjects")
    val_subjects = [Subject.load(root / name) for name in config.data.val_subjects]
    size, spacing = config.data.image_size, config.data.spacing_mm
    target = config.data.target
    val = validation_set(val_subjects, size, spacing, validation_poses(target), target=target)

    model = build_model(config.model, size)
    # the starting file's sha256 goes into every checkpoint: the file may be replaced later (a
    # shipped model fine-tuned and shipped again), and export's interpolation with the start
    # (medseg.segment.export.interpolate_with_start) must read the weights the run started from
    start_sha: dict[str, str] = {}  # a resumed run takes its record from last.pt (below)
    if cfg.init_from and not (resume and (out / "last.pt").exists()):
        start_sha = {"init_sha256": sha256_file(Path(cfg.init_from))}
        initialise(model, Path(cfg.init_from), freeze_batch_norm=cfg.freeze_batch_norm)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * cfg.iterations_per_epoch

    def factor(step: int) -> float:  # from the config, not the checkpoint: a resumed run may change it
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "cosine_time":
            elapsed = (time.time() - start) / 60 if "start" in clock else 0.0
            return 0.5 * (1.0 + float(np.cos(np.pi * min(elapsed / cfg.max_minutes, 1.0))))
        return 0.5 * (1.0 + float(np.cos(np.pi * min(step, total_steps) / total_steps)))

    clock: dict[str, bool] = {}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    from monai.losses import DiceCELoss, DiceLoss

    loss_fn = (DiceCELoss(to_onehot_y=True, softmax=True) if cfg.loss == "dice_ce"
               else DiceLoss(to_onehot_y=True, softmax=True))
    state: dict[str, Any] = {"epoch": 0, "best": -1.0, "since_best": 0, "seconds": 0.0}  # as checkpointed
    last = out / "last.pt"
    if resume and last.exists():
        checkpoint = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        scheduler.last_epoch = int(checkpoint["state"].get("step", state["epoch"] * cfg.iterations_per_epoch))
        state = checkpoint["state"]
        # the start this run's weights came from, as recorded when it began (the file may have
        # been replaced since; a run begun before the record has none, and export then asks)
        start_sha = {"init_sha256": checkpoint["init_sha256"]} if "init_sha256" in checkpoint else {}
        if state.get("validation") != _validation_signature(config):
            state["best"], state["since_best"] = -1.0, 0  # a different validation set: start over
        scheduler.step()
        state["step"] = scheduler.last_epoch
        log.info("resumed from %s at epoch %d (best Dice %.4f)", last, state["epoch"], state["best"])

    loader = torch.utils.data.DataLoader(
        PlaneSamples(train_subjects, config.augment, size, spacing, seed=cfg.seed + state["epoch"],
                     target=target),
        batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    batches = iter(loader)
    state["validation"] = _validation_signature(config)
    start = time.time() - state["seconds"]
    clock["start"] = True
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    while state["epoch"] < cfg.epochs:
        losses = []
        model.train()  # evaluate() leaves the model in training mode; frozen batch norms go back
        if cfg.freeze_batch_norm:
            freeze_batch_norm(model)
        for _ in progress(range(cfg.iterations_per_epoch), desc=f"epoch {state['epoch'] + 1}",
                          enabled=show_progress):
            image, label = next(batches)
            optimiser.zero_grad()
            loss = loss_fn(model(image), label)
            loss.backward()
            optimiser.step()
            scheduler.step()
            state["step"] = state.get("step", 0) + 1
            losses.append(loss.item())
        state["epoch"] += 1
        state["seconds"] = time.time() - start
        score = evaluate(model, val)
        improved = score > state["best"]
        if improved:
            state["best"], state["since_best"] = score, 0
            torch.save({"model": model.state_dict(), "config": asdict(config), "epoch": state["epoch"],
                        "val_dice": score, **start_sha}, out / "best.pt")
        else:
            state["since_best"] += 1
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "state": state, "config": asdict(config),
                    **start_sha},
                   out / "last.tmp")
        os.replace(out / "last.tmp", last)
        record = {"epoch": state["epoch"], "loss": float(np.mean(losses)), "val_dice": score,
                  "best": state["best"], "lr": scheduler.get_last_lr()[0], "minutes": state["seconds"] / 60}
        with open(out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        log.info("epoch %d loss %.4f val Dice %.4f (best %.4f)", record["epoch"], record["loss"], score, state["best"])
        if state["since_best"] >= cfg.patience and cfg.select == "best":
            log.info("early stop: no improvement in %d epochs", cfg.patience)
            break
        if state["seconds"] / 60 >= cfg.max_minutes:
            log.info("time budget of %.0f min reached", cfg.max_minutes)
            break
    if cfg.select == "last":
        torch.save({"model": model.state_dict(), "config": asdict(config), "epoch": state["epoch"],
                    "val_dice": score, "selection": "last", **start_sha}, out / "final.pt")
        return out / "final.pt"
    return out / "best.pt"


def initialise(model: torch.nn.Module, path: Path, *, freeze_batch_norm: bool = False) -> None:
    """Load ``model``'s weights from a training checkpoint or an exported ONNX file (same
    architecture)."""
    if path.suffix == ".onnx":
        if not freeze_batch_norm:
            raise ValueError(f"{path}: an exported model's batch norms are folded into its "
                             "convolutions; set train.freeze_batch_norm: true to fine-tune it")
        load_onnx_weights(model, path)
        return
    load_matching_weights(model, torch.load(path, map_location="cpu", weights_only=False)["model"], path)
    log.info("initialised from %s", path)


def _validation_signature(config: TrainingConfig) -> str:
    return json.dumps([list(config.data.val_subjects),
                       [asdict(p) for p in validation_poses(config.data.target)]])


def load_training_config(path: str | Path) -> TrainingConfig:
    return load_config(path, TrainingConfig)
