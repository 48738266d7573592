"""lr_find: sweep the learning rate exponentially on a copy of the model; suggest a rate."""

import copy
import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .models import Classifier
from .train import make_optimizer, train_step

log = logging.getLogger(__name__)

DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its minimum


@dataclass
class Settings:
    """The `lr_find` section of config.yaml."""

    start_lr: float
    end_lr: float
    num_iter: int
    max_epochs: float
    suggestion: str


def sweep(
    model: Classifier,
    loader: DataLoader,
    settings: Settings,
    device: torch.device,
    weight_decay: float,
    momentum: float,
) -> pd.DataFrame:
    """Loss at each rate from start_lr to end_lr, on a copy: `model` itself is not changed.

    At most num_iter batches and at most max_epochs epochs' worth, stopping when the loss
    diverges.
    """
    work = copy.deepcopy(model).to(device)
    work.train()
    rates = [settings.start_lr] * len(work.layer_groups())
    optimizer, scaler = make_optimizer(work, rates, weight_decay, momentum, device)
    steps = max(2, min(settings.num_iter, math.floor(settings.max_epochs * len(loader))))
    ratio = settings.end_lr / settings.start_lr
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    smoothing = smoothing_for(steps)
    rows, average, best = [], 0.0, math.inf
    for step, (images, targets) in zip(tqdm(range(steps), desc="lr_find"), batches, strict=False):
        lr = settings.start_lr * ratio ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        value = train_step(work, optimizer, scaler, images, targets, device)
        if not math.isfinite(value):
            break
        average = smoothing * average + (1 - smoothing) * value
        smoothed = average / (1 - smoothing ** (step + 1))
        rows.append({"lr": lr, "loss": value, "smoothed_loss": smoothed})
        best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            break
    log.info("lr_find: %d of %d steps before stopping", len(rows), steps)
    return pd.DataFrame(rows, columns=["lr", "loss", "smoothed_loss"])


def smoothing_for(steps: int) -> float:
    """The weight of the past in the loss's moving average: an effective window of a tenth
    of the sweep, so that a short sweep is not all lag (fastai's fixed 0.98 spans 50 steps)."""
    return min(0.98, max(0.5, 1 - 10 / steps))


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The middle of the longest stretch over which the loss keeps falling (fastai's default).

    The stretch is the longest decreasing subsequence of the smoothed losses: it is where
    training makes progress, away from the flat start and the divergent end.
    """
    length = np.ones(len(losses), dtype=int)
    previous = np.full(len(losses), -1)
    for i in range(len(losses)):
        for j in range(i):
            if losses[j] > losses[i] and length[j] + 1 > length[i]:
                length[i], previous[i] = length[j] + 1, j
    end = int(length.argmax())
    start = end
    while previous[start] >= 0:
        start = int(previous[start])
    return float(lrs[(start + end) // 2])


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Where the loss falls fastest against log(rate), before its minimum."""
    lowest = int(losses.argmin())
    if lowest < 2:
        return float(lrs[lowest])
    slopes = np.gradient(losses[: lowest + 1], np.log(lrs[: lowest + 1]))
    return float(lrs[int(slopes.argmin())])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the rate with the lowest loss."""
    return float(lrs[int(losses.argmin())] / 10)


SUGGESTIONS = {"valley": valley, "steep": steep, "minimum": minimum}


def suggest(table: pd.DataFrame) -> dict[str, float]:
    if len(table) < 3:
        raise ValueError("lr_find diverged at once: lower start_lr")
    lrs, losses = table["lr"].to_numpy(), table["smoothed_loss"].to_numpy()
    return {name: method(lrs, losses) for name, method in SUGGESTIONS.items()}
