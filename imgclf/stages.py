"""The training stages as the rules run them: lr_find, train_stage1, finetune_stage2."""

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import lr_find
from .data import Augment, make_loaders, read_split
from .files import file_sha256, write_csv, write_text
from .models import IMAGENET_MEAN, IMAGENET_STD, Classifier, build_model, freeze_body, unfreeze
from .plots import plot_image_grid, plot_losses, plot_lr_find, plot_schedule
from .train import (
    OneCycleSettings,
    discriminative_rates,
    fit_one_cycle,
    load_weights,
    pick_device,
    save_weights,
    seed_everything,
)

log = logging.getLogger(__name__)

WORSE = 1.1  # stage 2 "made things worse" above this many times stage 1's validation loss


@dataclass
class ModelSettings:
    """The `model` section of config.yaml."""

    arch: str
    pretrained: bool
    image_size: int
    batch_size: int


@dataclass
class Job:
    """What every training rule shares: data, model, seed and CPU threads."""

    split: str
    classes: list[str]
    model: ModelSettings
    augment: Augment
    seed: int
    threads: int

    def setup(self) -> torch.device:
        """Seed, cap torch's threads; the device to run on."""
        # More threads than cores (--cores 4 on a 2-core machine) makes torch much slower.
        torch.set_num_threads(min(self.threads, len(os.sched_getaffinity(0))))
        seed_everything(self.seed)
        device = pick_device()
        log.info("device: %s, %d CPU threads", device, torch.get_num_threads())
        return device

    def start(self):
        """Set up, load the data; returns (train_loader, valid_loader, device)."""
        device = self.setup()
        train_loader, valid_loader = make_loaders(
            read_split(self.split),
            self.classes,
            self.model.image_size,
            self.model.batch_size,
            self.augment,
            self.seed,
            self.threads,
        )
        return train_loader, valid_loader, device

    def build(self, stage1_weights: str | None = None) -> Classifier:
        """Stage 1's model (pretrained body frozen) or, given its weights, stage 2's (unfrozen)."""
        if stage1_weights is None:
            model = build_model(self.model.arch, len(self.classes), self.model.pretrained)
            freeze_body(model)
        else:
            model = build_model(self.model.arch, len(self.classes), pretrained=False)
            load_weights(model, stage1_weights)
            model.keeps_body_statistics = self.model.pretrained
            unfreeze(model)
        return model


def stage_rates(
    settings: OneCycleSettings, groups: int, lr_find_json: str | None, discriminative: bool
) -> tuple[list[float], str]:
    """Peak rate per layer group (one rate for all, or [lo, hi] spread geometrically), and why.

    `auto` takes lr_find's choice: as the one rate, or (discriminative) as hi with
    lo = hi / 100.
    """
    max_lr, reason = settings.max_lr, "max_lr in the config"
    if max_lr == "auto":
        found = json.loads(Path(lr_find_json).read_text())
        hi, reason = found["lr"], f"auto: {found['reason']}"
        max_lr = [hi / 100, hi] if discriminative else hi
    if isinstance(max_lr, list):
        return discriminative_rates(*max_lr, groups), reason
    return [max_lr] * groups, reason


def train_stage(
    job: Job,
    stage: str,
    settings: OneCycleSettings,
    outputs,
    lr_find_json: str | None = None,
    stage1_weights: str | None = None,
    stage1_meta: str | None = None,
) -> None:
    """Train one stage and write its weights, history, schedule, plots and model.json.

    Stage 2 (given stage 1's weights and model.json) also says whether it made things worse.
    """
    train_loader, valid_loader, device = job.start()
    if stage == "stage1":
        plot_sample_batch(train_loader, job.classes, outputs.batch)
    model = job.build(stage1_weights)
    log.info("model:\n%s", model)
    groups = len(model.layer_groups())
    rates, reason = stage_rates(
        settings, groups, lr_find_json, discriminative=stage1_weights is not None
    )
    log.info(
        "%s: peak learning rates per layer group %s (%s)",
        stage,
        [f"{r:.2e}" for r in rates],
        reason,
    )
    history, steps = fit_one_cycle(
        model, train_loader, valid_loader, rates, settings, stage, device
    )
    write_csv(outputs.history, history)
    write_csv(outputs.steps, steps)
    plot_losses(history, steps, outputs.losses, f"{stage}: losses")
    plot_schedule(steps, outputs.schedule, f"{stage}: one-cycle schedule")
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
        stage1 = json.loads(Path(stage1_meta).read_text())
        config["stages"] = stage1["config"]["stages"]
        meta["versus_stage1"] = versus_stage1(stage1["metrics"], metrics)
    config["stages"][stage] = {**asdict(settings), "max_lr": rates}
    write_text(outputs.meta, json.dumps(meta, indent=2) + "\n")
    save_weights(model, outputs.weights)  # last, so its presence means the stage finished


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


def plot_sample_batch(loader, classes: list[str], path, count: int = 9) -> None:
    """Training images as the model sees them after augmentation (fastai's show_batch)."""
    images, targets = next(iter(loader))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = [(image * std + mean).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
              for image in images[:count]]  # fmt: skip
    titles = [classes[target] for target in targets[:count]]
    plot_image_grid(pixels, titles, path, "a training batch, augmented")


def find_lr(
    job: Job,
    stage: str,
    settings: lr_find.Settings,
    weight_decay: float,
    momentum: float,
    outputs,
    stage1_weights: str | None = None,
    stage1_meta: str | None = None,
) -> None:
    """Sweep the rate for a stage's starting model; write the table, plot and chosen rate."""
    train_loader, _, device = job.start()
    model = job.build(stage1_weights)
    stage1_lr = None
    if stage1_meta is not None:
        stage1_lr = json.loads(Path(stage1_meta).read_text())["peak_learning_rates"][-1]
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
    write_csv(outputs.table, result.table)
    plot_lr_find(result.table, suggestions, settings.suggestion, outputs.plot, f"lr_find {stage}")
    summary = {
        "stage": stage,
        "suggestion": settings.suggestion,
        "lr": choice.lr,
        "reason": choice.reason,
        "from_sweep": choice.from_sweep,
        **suggestions,
        "loss_falls": falls,
    }
    write_text(outputs.suggestion, json.dumps(summary, indent=2) + "\n")


def make_job(split: str, params: dict, threads: int) -> Job:
    """A Job from the rules' `job` parameter (see workflow/rules/common.smk)."""
    return Job(
        split=split,
        classes=params["classes"],
        model=ModelSettings(**params["model"]),
        augment=Augment(**params["augment"]),
        seed=params["seed"],
        threads=threads,
    )
