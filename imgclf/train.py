"""Training: one-cycle fitting, evaluation, and pickle-free weights."""

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import Checkpoint
from .data import Collate
from .files import DamagedFile, atomic_path
from .models import Classifier, HeadOverFrozenBody, body_is_frozen
from .schedule import OneCycle

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "seconds"]
ADAM_BETA2 = 0.99


class TrainingError(RuntimeError):
    """Training went wrong (a non-finite loss); nothing is written."""


@dataclass
class OneCycleSettings:
    """A training stage's section of config.yaml (train_stage1, finetune_stage2), but for
    its `max_lr`, which `stages.stage_rates` resolves to the rates of `fit_one_cycle`."""

    epochs: int
    div_factor: float
    pct_start: float
    moms: list[float]
    weight_decay: float
    start_size: int | None = field(default=None, kw_only=True)  # progressive resizing


@dataclass
class FrozenStageSettings(OneCycleSettings):
    """train_stage1's section: a one-cycle stage over the pretrained body, which trains its
    batch norms' scales and shifts (`train_body_norms`, as fastai's freeze does) or nothing."""

    train_body_norms: bool


def epoch_sizes(start_size: int | None, image_size: int, epochs: int) -> list[int]:
    """The side each epoch of a stage trains at: with `start_size`, from it up to
    `image_size` in even steps, the last epoch at `image_size` (progressive resizing, as
    fastai's lessons and FFCV's recipes do it: the early epochs, which move the weights most,
    cost less at a smaller size); without, every epoch at `image_size`. Validation is always
    at `image_size`, the size the model is exported for."""
    if start_size is None or epochs == 1:
        return [image_size] * epochs
    step = (image_size - start_size) / (epochs - 1)
    return [round(start_size + step * epoch) for epoch in range(epochs)]


def resized(batches: Iterable, side: int) -> Iterator:
    """Each (images, targets) batch with its images resized to side x side (antialiased, as
    the pack's images are made)."""
    for images, targets in batches:
        if images.shape[-1] != side:
            images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
        yield images, targets


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    """Mixed precision on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def discriminative_rates(lo: float, hi: float, groups: int) -> list[float]:
    """Rates spread geometrically from lo (first group) to hi (last), like fastai's slice."""
    if groups == 1:
        return [hi]
    return [lo * (hi / lo) ** (index / (groups - 1)) for index in range(groups)]


def param_groups(model: Classifier, rates: list[float], weight_decay: float) -> list[dict]:
    """Optimizer groups: per layer group its rate; no weight decay on biases and norms."""
    groups = []
    for layer_group, rate in zip(model.layer_groups(), rates, strict=True):
        trainable = [p for p in layer_group.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.ndim > 1]
        no_decay = [p for p in trainable if p.ndim <= 1]
        for params, decay_rate in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "max_lr": rate, "weight_decay": decay_rate})
    return groups


def make_optimizer(
    model: Classifier, rates: list[float], weight_decay: float, momentum: float, device
) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler]:
    """AdamW over the trainable parameters, one peak rate per layer group, and its scaler."""
    groups = param_groups(model, rates, weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=rates[-1], betas=(momentum, ADAM_BETA2))
    return optimizer, torch.amp.GradScaler(enabled=device.type == "cuda")


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device`, channels-last, as every batch is (to_device): on this 2-core
    CPU efficientnet_lite0's training steps then run 1.3x (frozen body) to 1.5x (unfrozen)
    faster and its evaluation 1.5-2x, its depthwise convolutions most of all; on a GPU it is
    the layout mixed precision wants."""
    return model.to(device, memory_format=torch.channels_last)


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, memory_format=torch.channels_last)


def train_step(model, optimizer, scaler, images, targets, device) -> float:
    """One mini-batch: the loss, and an optimiser step unless the loss is not finite."""
    images, targets = to_device(images, device), targets.to(device)
    with autocast(device):
        loss = F.cross_entropy(model(images), targets)
    value = loss.item()
    if math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return value


Schedule = Callable[[int, float], tuple[float, float]]  # (step, peak rate) -> (rate, momentum)


def scheduled_steps(
    model: nn.Module,
    batches: Iterable,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: Schedule,
    device: torch.device,
    first_step: int = 0,
) -> Iterator[dict]:
    """Per batch: set each group's rate (from its peak, `max_lr`) and momentum, take the step,
    and yield its record (step, lr of the last group, momentum, loss).

    fit_one_cycle and the lr_find sweep both train this way; each decides what a non-finite
    loss means (an error; the end of the sweep) and stops by not asking for the next step.
    """
    for step, (inputs, targets) in enumerate(batches, start=first_step):
        for group in optimizer.param_groups:
            group["lr"], momentum = schedule(step, group["max_lr"])
            group["betas"] = (momentum, ADAM_BETA2)
        loss = train_step(model, optimizer, scaler, inputs, targets, device)
        lr = optimizer.param_groups[-1]["lr"]
        yield {"step": step, "lr": lr, "momentum": momentum, "loss": loss}


@torch.no_grad()
def forward_batches(
    model: nn.Module, images: Sequence[torch.Tensor], batch_size: int, device: torch.device
) -> torch.Tensor:
    """The model's outputs (on the CPU) for prepared uint8 images, batch by batch, in eval
    mode: the way interpret and the features rule run a model over every image. `images`
    may be a pack's Squares, read batch by batch."""
    on_device(model, device).eval()
    collate, parts = Collate(), []
    for start in range(0, len(images), batch_size):
        batch, _ = collate([(image, 0) for image in images[start : start + batch_size]])
        with autocast(device):
            parts.append(model(to_device(batch, device)).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for images, targets in loader:
        images, targets = to_device(images, device), targets.to(device)
        with autocast(device):
            logits = model(images)
        total_loss += F.cross_entropy(logits.float(), targets, reduction="sum").item()
        correct += (logits.argmax(1) == targets).sum().item()
        count += len(targets)
    accuracy = correct / count
    return {"valid_loss": total_loss / count, "error_rate": 1 - accuracy, "accuracy": accuracy}


def fit_one_cycle(
    model: Classifier,
    train_loader: DataLoader,
    valid_loader: DataLoader,
    rates: list[float],
    settings: OneCycleSettings,
    stage: str,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
    sizes: list[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train with one-cycle rate and momentum; returns per-epoch history and per-step schedule.

    `rates` holds the peak rate of each layer group; each group follows the same cycle scaled
    to its peak. Momentum is Adam's beta1. With `checkpoint`, the state is saved after every
    epoch, and a run that finds its own checkpoint goes on from there. A body with nothing to
    train is run without gradients (HeadOverFrozenBody). `sizes` (epoch_sizes): the side
    each epoch's training batches are resized to; without it, the side they come at.
    """
    on_device(model, device)
    optimizer, scaler = make_optimizer(
        model, rates, settings.weight_decay, settings.moms[0], device
    )
    total_steps = settings.epochs * len(train_loader)
    cycle = OneCycle(total_steps, settings.div_factor, settings.pct_start, tuple(settings.moms))
    history, steps, epochs_done = [], [], 0
    generator = train_loader.generator
    if checkpoint is not None:
        resumed = checkpoint.restore(model, optimizer, scaler, generator)
        if resumed is not None:
            history, steps, epochs_done = resumed.history, resumed.steps, resumed.epochs_done
    trained = on_device(HeadOverFrozenBody(model), device) if body_is_frozen(model) else model
    for epoch in range(epochs_done, settings.epochs):
        started = time.perf_counter()
        trained.train()
        batches = tqdm(train_loader, desc=f"{stage} epoch {epoch + 1}", mininterval=5)
        if sizes is not None:
            batches = resized(batches, sizes[epoch])
        first_step = len(steps)
        records = scheduled_steps(trained, batches, optimizer, scaler, cycle, device, first_step)
        for record in records:
            if not math.isfinite(record["loss"]):
                raise TrainingError(
                    f"{stage}: the loss became {record['loss']} in epoch {epoch + 1} at learning "
                    f"rate {record['lr']:.3g}; lower max_lr"
                )
            steps.append(record)
        metrics = evaluate(trained, valid_loader, device)
        losses = [record["loss"] for record in steps[first_step:]]
        row = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            **metrics,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        log.info(
            "%s epoch %d%s: train_loss %.4f valid_loss %.4f error_rate %.4f (%.1f s)",
            stage,
            row["epoch"],
            f" at {sizes[epoch]} px" if sizes else "",
            row["train_loss"],
            row["valid_loss"],
            row["error_rate"],
            row["seconds"],
        )
        if checkpoint is not None:
            checkpoint.save(epoch + 1, model, optimizer, scaler, generator, history, steps)
    return pd.DataFrame(history, columns=HISTORY_COLUMNS), pd.DataFrame(steps)


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, tmp)


def load_weights(model: nn.Module, path: str | Path) -> None:
    try:
        weights = load_file(path)
    except (OSError, SafetensorError) as error:
        raise DamagedFile(path, f"unreadable weights: {error}") from error
    model.load_state_dict(weights, strict=True)
