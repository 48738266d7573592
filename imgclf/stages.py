"""The training stages as the rules run them: lr_find, train_stage1, finetune_stage2.

Each returns what it made; the rule's script writes it.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from . import lr_find
from .checkpoint import Checkpoint, run_key
from .files import file_sha256, read_json
from .job import Job
from .models import IMAGENET_MEAN, IMAGENET_STD, Classifier
from .plots import plot_image_grid, plot_lr_find
from .train import (
    FrozenStageSettings,
    OneCycleSettings,
    discriminative_rates,
    epoch_sizes,
    fit_one_cycle,
)

log = logging.getLogger(__name__)

WORSE = 1.1  # stage 2 "made things worse" above this many times stage 1's validation loss

MaxLr = float | list[float] | str  # a stage's `max_lr` in config.yaml: a rate, [lo, hi], auto


@dataclass
class TrainedStage:
    """A trained stage: the model, its per-epoch history and per-step schedule, its model.json,
    and (stage 1) a training batch as the model saw it."""

    model: Classifier
    history: pd.DataFrame
    steps: pd.DataFrame
    meta: dict
    sample_batch: Figure | None = None


@dataclass
class FoundRate:
    """An lr_find sweep: the loss at each rate, its plot, and the rate chosen with the reason."""

    table: pd.DataFrame
    plot: Figure
    summary: dict


def stage_rates(
    max_lr: MaxLr, groups: int, lr_find_json: str | None, discriminative: bool
) -> tuple[list[float], str]:
    """Peak rate per layer group (one rate for all, or [lo, hi] spread geometrically), and why.

    `auto` takes lr_find's choice: as the one rate, or (discriminative) as hi with
    lo = hi / 100.
    """
    reason = "max_lr in the config"
    if max_lr == "auto":
        found = read_json(lr_find_json)
        hi, reason = found["lr"], f"auto: {found['reason']}"
        max_lr = [hi / 100, hi] if discriminative else hi
    if isinstance(max_lr, list):
        return discriminative_rates(*max_lr, groups), reason
    return [max_lr] * groups, reason


def train_stage(
    job: Job,
    stage: str,
    settings: OneCycleSettings | FrozenStageSettings,
    max_lr: MaxLr,
    lr_find_json: str | None = None,
    stage1_weights: str | None = None,
    stage1_meta: str | None = None,
    checkpoint_path: str | None = None,
) -> TrainedStage:
    """Train one stage. Stage 2 (given stage 1's weights and model.json) also says whether it
    made things worse. With `checkpoint_path`, each epoch is checkpointed there, and a run
    killed part-way resumes from its last finished epoch (see checkpoint.py)."""
    train_loader, valid_loader, device = job.start()
    sample_batch = None
    if stage == "stage1":
        sample_batch = plot_sample_batch(train_loader, job.classes)
    if stage1_weights is None:
        model = job.build(train_body_norms=settings.train_body_norms)
    else:
        model = job.build(stage1_weights)
    log.info("model:\n%s", model)
    groups = len(model.layer_groups())
    rates, reason = stage_rates(
        max_lr, groups, lr_find_json, discriminative=stage1_weights is not None
    )
    log.info(
        "%s: peak learning rates per layer group %s (%s)",
        stage,
        [f"{r:.2e}" for r in rates],
        reason,
    )
    checkpoint = None
    if checkpoint_path is not None:
        key = run_key(
            stage=stage,
            split=file_sha256(job.split),
            pack=file_sha256(job.pack[1]),
            classes=job.classes,
            seed=job.seed,
            model=asdict(job.model),
            augment=asdict(job.augment),
            settings=asdict(settings),
            rates=rates,
            stage1=stage1_weights and file_sha256(stage1_weights),
        )
        checkpoint = Checkpoint(Path(checkpoint_path), key)
    sizes = epoch_sizes(settings.start_size, job.model.image_size, settings.epochs)
    history, steps = fit_one_cycle(
        model, train_loader, valid_loader, rates, settings, stage, device, checkpoint, sizes
    )
    final = history.iloc[-1]
    metrics = {key: float(final[key]) for key in ("valid_loss", "error_rate", "accuracy")}
    # Everything that made this model, resolved (max_lr as the rates used; stage 2 carries
    # stage 1's too), beside the split it learned from: enough to train it again.
    config = {
        "seed": job.seed,
        "model": asdict(job.model),
        "augment": asdict(job.augment),
        "stages": {},
    }
    meta = {
        "stage": stage,
        "arch": job.model.arch,
        "classes": job.classes,
        "image_size": job.model.image_size,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "peak_learning_rates": rates,
        "learning_rates_from": reason,
        "epochs": settings.epochs,
        "metrics": metrics,
        "config": config,
        "split_sha256": file_sha256(job.split),
    }
    if stage1_meta is not None:
        stage1 = read_json(stage1_meta)
        config["stages"] = stage1["config"]["stages"]
        meta["versus_stage1"] = versus_stage1(stage1["metrics"], metrics)
    config["stages"][stage] = {"max_lr": rates, **asdict(settings)}
    return TrainedStage(model, history, steps, meta, sample_batch)


def versus_stage1(stage1: dict, stage2: dict) -> dict:
    """Both stages' final validation metrics, and whether stage 2 clearly made things worse:
    a validation loss more than WORSE times stage 1's (fastai's lesson went back to stage 1
    by hand when unfreezing did not help; `final_model: best` does it by itself)."""
    worse = stage2["valid_loss"] > WORSE * stage1["valid_loss"]
    if worse:
        log.warning(
            "stage2 made the model worse: validation loss %.4f against stage 1's %.4f, error "
            "rate %.4f against %.4f",
            stage2["valid_loss"],
            stage1["valid_loss"],
            stage2["error_rate"],
            stage1["error_rate"],
        )
    return {"stage1": stage1, "stage2": stage2, "worse": worse}


def plot_sample_batch(loader, classes: list[str], count: int = 9) -> Figure:
    """Training images as the model sees them after augmentation (fastai's show_batch)."""
    images, targets = next(iter(loader))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = [
        (image * std + mean).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
        for image in images[:count]
    ]
    titles = [classes[target] for target in targets[:count]]
    return plot_image_grid(pixels, titles, "a training batch, augmented")


def find_lr(
    job: Job,
    stage: str,
    settings: lr_find.LrFindSettings,
    weight_decay: float,
    momentum: float,
    stage1_weights: str | None = None,
    stage1_meta: str | None = None,
) -> FoundRate:
    """Sweep the rate for a stage's starting model and choose one."""
    train_loader, _, device = job.start()
    model = job.build(stage1_weights)
    stage1_lr = None
    if stage1_meta is not None:
        stage1_lr = read_json(stage1_meta)["peak_learning_rates"][-1]
        settings = lr_find.up_to(settings, stage1_lr)
    result = lr_find.sweep(
        model,
        train_loader,
        settings,
        device,
        weight_decay,
        momentum,
        body_frozen=stage1_weights is None,
    )
    choice = lr_find.choose(result, settings.suggestion, stage, stage1_lr)
    readable = lr_find.readable(result)
    suggestions = lr_find.suggest(result) if readable else {}
    falls = lr_find.loss_falls(result) if readable else None
    log.info("%s: suggestions %s; using %.3g: %s", stage, suggestions, choice.lr, choice.reason)
    plot = plot_lr_find(result.table, suggestions, settings.suggestion, f"lr_find {stage}")
    summary = {
        "stage": stage,
        "suggestion": settings.suggestion,
        "lr": choice.lr,
        "reason": choice.reason,
        "from_sweep": choice.from_sweep,
        **suggestions,
        "loss_falls": falls,
    }
    return FoundRate(result.table, plot, summary)
