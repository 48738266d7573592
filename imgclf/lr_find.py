"""lr_find: sweep the learning rate exponentially on a copy of the model; choose a rate.

The rate a stage trains at comes from the sweep only when the curve answers clearly and the
answer is consistent with what is known; otherwise the seed's rate is used, and the reason is
written beside the rate (`Choice`).
"""

import copy
import dataclasses
import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .models import Classifier
from .train import autocast, make_optimizer, on_device, scheduled_steps, to_device

log = logging.getLogger(__name__)

DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its minimum
FALL = 5.0  # standard errors; a flat loss's best window beats its first by up to ~4 by chance
RISE = 2.0  # the loss diverges once it is this many times its typical (median) level
MIN_POINTS = 10  # a sweep that diverged within fewer rates (or two windows) cannot be read
# Rates a decade, at least: the smoothed loss lags the rate by a step or two, which in a sparser
# sweep is most of a decade (18 rates from 1e-7 to 10 put stage 1's valley at 0.04 on photos).
MIN_PER_DECADE = 4
# The seed's rates (fastai's lesson 1: fit_one_cycle(4, 3e-3), then slice(1e-6, 1e-4)): what a
# stage trains at when its sweep gives no clear answer. Stage 2's is the hi of the slice.
SEED_RATES = {"stage1": 3e-3, "stage2": 1e-4}
# Stage 2 fine-tunes a trained body: its peak stays at most a tenth of stage 1's, as fastai's
# lesson does with slice(lr / 100, lr / 10) from the stage-1 rate.
STAGE2_SHARE = 0.1


@dataclass
class LrFindSettings:
    """The `lr_find` section of config.yaml."""

    start_lr: float
    end_lr: float
    num_iter: int
    suggestion: str


@dataclass
class Sweep:
    """The loss at each rate tried, and the window of the loss's moving average (in steps)."""

    table: pd.DataFrame
    window: int


class HeadOnly(nn.Module):
    """A classifier's head over pooled body features, as the frozen-body sweep trains it."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def layer_groups(self) -> list[nn.Module]:
        return [self.head]


@torch.no_grad()
def body_features(model: Classifier, loader: DataLoader, batches: int, device) -> list:
    """(pooled features, targets) of up to `batches` augmented training batches, computed once.

    A frozen body's output hardly changes as stage 1 trains (its batch norms keep their
    ImageNet statistics; only their scale and shift train), so stage 1's sweep trains the head
    alone over these features: a hundred steps of a small head instead of a hundred passes
    through the body and back.
    """
    model.train()
    features = []
    for images, targets in itertools.islice(loader, batches):
        with autocast(device):
            maps = model.body(to_device(images, device))
        features.append((F.adaptive_avg_pool2d(maps.float(), 1), targets.to(device)))
    return features


def sweep(
    model: Classifier,
    loader: DataLoader,
    settings: LrFindSettings,
    device: torch.device,
    weight_decay: float,
    momentum: float,
    body_frozen: bool,
) -> Sweep:
    """Loss at each of num_iter rates from start_lr to end_lr, on a copy: `model` itself is not
    changed. The training data is cycled as often as num_iter batches need (a small data set
    is a few batches an epoch), and the sweep stops when the loss diverges.

    With `body_frozen` (stage 1), the head alone is swept over body features computed once.
    """
    work = on_device(copy.deepcopy(model), device)
    work.train()
    if body_frozen:
        batches = body_features(work, loader, settings.num_iter, device)
        work = HeadOnly(work.head)
    else:
        batches = loader
    # Every group starts at start_lr, its "peak", and rises from there exponentially.
    rates = [settings.start_lr] * len(work.layer_groups())
    optimizer, scaler = make_optimizer(work, rates, weight_decay, momentum, device)
    steps = settings.num_iter
    ratio = settings.end_lr / settings.start_lr

    def exponential(step: int, start_lr: float) -> tuple[float, float]:
        return start_lr * ratio ** (step / (steps - 1)), momentum

    cycled = itertools.chain.from_iterable(itertools.repeat(batches))
    batches = tqdm(itertools.islice(cycled, steps), total=steps, desc="lr_find")
    average = MovingAverage(steps)
    rows, best = [], math.inf
    for record in scheduled_steps(work, batches, optimizer, scaler, exponential, device):
        if not math.isfinite(record["loss"]):
            break
        smoothed = average.add(record["loss"])
        rows.append({"lr": record["lr"], "loss": record["loss"], "smoothed_loss": smoothed})
        # An average of fewer batches than its window is too noisy to set the minimum: one
        # lucky first batch would otherwise stop a flat sweep long before it diverges.
        if len(rows) >= average.window:
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


def readable(result: Sweep) -> bool:
    """Whether the sweep has enough rates, densely enough, to tell a fall from noise."""
    rates = result.table["lr"]
    if len(rates) < max(MIN_POINTS, 2 * result.window):
        return False
    return len(rates) - 1 >= MIN_PER_DECADE * math.log10(rates.iloc[-1] / rates.iloc[0])


def suggest(result: Sweep) -> dict[str, float]:
    """Every suggestion of a `readable` sweep."""
    return {name: method(result) for name, method in SUGGESTIONS.items()}


def rises(result: Sweep) -> bool:
    """Whether the smoothed loss passed RISE times its median: the sweep saw the divergence."""
    smoothed = settled(result)
    return bool(np.nanmax(smoothed) > RISE * np.nanmedian(smoothed))


def rose_at(result: Sweep) -> float:
    """The rate past which the loss goes up: its lowest point when it falls first, else where
    a flat loss starts to diverge."""
    if loss_falls(result):
        return float(result.table["lr"].iloc[int(np.nanargmin(settled(result)))])
    return divergence_onset(result)


@dataclass
class Choice:
    """The rate a stage trains at (stage 2: its hi), and why."""

    lr: float
    reason: str
    from_sweep: bool


def choose(result: Sweep, suggestion: str, stage: str, stage1_lr: float | None = None) -> Choice:
    """The sweep's `suggestion`, checked against what is known; the seed's rate otherwise.

    A curve gives no clear answer when it is not `readable`, when a new head's loss (stage 1)
    never fell, or when a flat loss never rose and nothing else bounds it. A rate is never above
    the point where the loss rose, and stage 2's is at most STAGE2_SHARE of stage 1's (a stage-2
    sweep ends at stage 1's rate: `up_to`). On a few hundred photos, sweeps of a handful of
    points gave stage 1 a rate of 0.039 and stage 2 one of 0.11, and the model ended at chance.
    """
    seed_rate = SEED_RATES[stage]
    if not readable(result):
        rates = result.table["lr"]
        swept = f" up to {rates.iloc[-1]:.3g}" if len(rates) else ""
        return Choice(
            seed_rate,
            f"the sweep has {len(rates)} rates{swept}, too few to read "
            f"(raise num_iter or lower start_lr); the seed's rate {seed_rate:g}",
            from_sweep=False,
        )
    falls = loss_falls(result)
    if stage == "stage1" and not falls:
        return Choice(
            seed_rate,
            f"a new head's loss did not fall by more than its noise; the seed's rate {seed_rate:g}",
            from_sweep=False,
        )
    if not falls and not rises(result):
        if stage1_lr is None:
            return Choice(
                seed_rate,
                f"the loss neither fell nor diverged over the sweep; the seed's rate {seed_rate:g}",
                from_sweep=False,
            )
        return Choice(
            STAGE2_SHARE * stage1_lr,
            f"the loss stayed flat up to stage 1's peak rate ({stage1_lr:.3g}): a tenth of it",
            from_sweep=True,
        )
    lr = SUGGESTIONS[suggestion](result)
    reason = f"{suggestion} of a loss that " + ("falls" if falls else "is flat, then diverges")
    limit = rose_at(result)
    if lr > limit:
        lr, reason = limit, f"{reason}, lowered to {limit:.3g} where the loss rose"
    if stage1_lr is not None and lr > STAGE2_SHARE * stage1_lr:
        lr = STAGE2_SHARE * stage1_lr
        reason = f"{reason}, lowered to a tenth of stage 1's peak rate ({stage1_lr:.3g})"
    return Choice(lr, reason, from_sweep=True)


def up_to(settings: LrFindSettings, end_lr: float) -> LrFindSettings:
    """The sweep ending at `end_lr` instead, as densely: stage 2 trains at a tenth of stage 1's
    rate at most, so its sweep need not go past stage 1's, and a hundred steps of the whole
    model are the dearest part of lr_find."""
    if not settings.start_lr < end_lr < settings.end_lr:
        return settings
    share = math.log(end_lr / settings.start_lr) / math.log(settings.end_lr / settings.start_lr)
    return dataclasses.replace(
        settings, end_lr=end_lr, num_iter=max(2 * MIN_POINTS, round(settings.num_iter * share))
    )
