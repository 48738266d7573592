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
FALL = 5.0  # standard errors; a flat loss's best window beats its first by up to ~4 by chance
RISE = 2.0  # the loss diverges once it is this many times its typical (median) level


@dataclass
class Settings:
    """The `lr_find` section of config.yaml."""

    start_lr: float
    end_lr: float
    num_iter: int
    max_epochs: float
    suggestion: str


@dataclass
class Sweep:
    """The loss at each rate tried, and the window of the loss's moving average (in steps)."""

    table: pd.DataFrame
    window: int


def sweep(
    model: Classifier,
    loader: DataLoader,
    settings: Settings,
    device: torch.device,
    weight_decay: float,
    momentum: float,
) -> Sweep:
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
    average = MovingAverage(steps)
    rows, best = [], math.inf
    for step, (images, targets) in zip(tqdm(range(steps), desc="lr_find"), batches, strict=False):
        lr = settings.start_lr * ratio ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        value = train_step(work, optimizer, scaler, images, targets, device)
        if not math.isfinite(value):
            break
        smoothed = average.add(value)
        rows.append({"lr": lr, "loss": value, "smoothed_loss": smoothed})
        # An average of fewer batches than its window is too noisy to set the minimum: one
        # lucky first batch would otherwise stop a flat sweep long before it diverges.
        if step + 1 >= average.window:
            best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            break
    log.info("lr_find: %d of %d steps before stopping", len(rows), steps)
    return Sweep(pd.DataFrame(rows, columns=["lr", "loss", "smoothed_loss"]), average.window)


class MovingAverage:
    """The smoothed loss: an exponential moving average, corrected for its zero start.

    Its effective window is a tenth of the sweep, so that a short sweep is not all lag
    (fastai's fixed weight of 0.98 spans 50 steps).
    """

    def __init__(self, steps: int):
        self.smoothing = min(0.98, max(0.5, 1 - 10 / steps))
        self.window = round(1 / (1 - self.smoothing))
        self.average, self.count = 0.0, 0

    def add(self, value: float) -> float:
        self.count += 1
        self.average = self.smoothing * self.average + (1 - self.smoothing) * value
        return self.average / (1 - self.smoothing**self.count)


def valley(result: Sweep) -> float:
    """The middle of the loss's fall: where the smoothed loss is halfway down from its start
    to its minimum.

    fastai takes the middle of the longest decreasing subsequence of the smoothed losses,
    which noise lengthens or cuts at either end: on the demo, five seeds gave rates 4.4x
    apart. A level crossing on the steep part of the fall moves little with the noise.
    A model that is already trained (stage 2) has no fall: its loss is flat, with noise,
    until it diverges, and its middle would be a rate picked by chance. When the loss does
    not fall by more than its noise, the suggestion is a tenth of the rate at which it starts
    to diverge.
    """
    if not loss_falls(result):
        return divergence_onset(result) / 10
    smoothed = settled(result)
    lowest = int(np.nanargmin(smoothed))
    start = result.table["loss"].iloc[: result.window].mean()
    halfway = (start + smoothed[lowest]) / 2
    above = np.flatnonzero(smoothed[: lowest + 1] >= halfway)  # NaN, unsettled, is never above
    first_settled = min(result.window, len(smoothed)) - 1
    crossing = min(above[-1] + 1, lowest) if len(above) else first_settled
    return float(result.table["lr"].iloc[crossing])


def loss_falls(result: Sweep) -> bool:
    """Whether the losses of the first window of batches are higher than those of the window
    that ends at the smoothed minimum, by more than FALL standard errors."""
    raw = result.table["loss"].to_numpy()
    if len(raw) < 4:
        return True
    window = min(result.window, len(raw) // 2)
    lowest = max(int(np.nanargmin(settled(result))), 2 * window - 1)
    first, best = raw[:window], raw[lowest - window + 1 : lowest + 1]
    error = math.sqrt((first.var(ddof=1) + best.var(ddof=1)) / window)
    return bool(first.mean() - best.mean() > FALL * error)


def divergence_onset(result: Sweep) -> float:
    """The last rate at which the smoothed loss is at most RISE times its median.

    The median, not the minimum, is the level of a flat loss: the minimum of a noisy curve
    is its luckiest dip, and a threshold near the noise moves with the seed.
    """
    smoothed = settled(result)
    below = np.flatnonzero(smoothed <= RISE * np.nanmedian(smoothed))
    return float(result.table["lr"].iloc[below[-1]])


def settled(result: Sweep) -> np.ndarray:
    """The smoothed losses, NaN where the average has seen fewer batches than its window."""
    smoothed = result.table["smoothed_loss"].to_numpy().copy()
    smoothed[: min(result.window, len(smoothed)) - 1] = np.nan
    return smoothed


def steep(result: Sweep) -> float:
    """Where the loss falls fastest against log(rate), before its minimum."""
    lrs, smoothed = result.table["lr"].to_numpy(), settled(result)
    first, lowest = int(np.flatnonzero(~np.isnan(smoothed))[0]), int(np.nanargmin(smoothed))
    if lowest - first < 2:
        return float(lrs[lowest])
    slopes = np.gradient(smoothed[first : lowest + 1], np.log(lrs[first : lowest + 1]))
    return float(lrs[first + int(slopes.argmin())])


def minimum(result: Sweep) -> float:
    """A tenth of the rate with the lowest loss."""
    return float(result.table["lr"].iloc[int(np.nanargmin(settled(result)))] / 10)


SUGGESTIONS = {"valley": valley, "steep": steep, "minimum": minimum}


def suggest(result: Sweep) -> dict[str, float]:
    if len(result.table) < 3:
        raise ValueError("lr_find diverged at once: lower start_lr")
    return {name: method(result) for name, method in SUGGESTIONS.items()}
