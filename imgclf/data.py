"""Data loading for training: images read from the pack (decoded once for the whole workflow,
memory-mapped), augmented as they are batched."""

import logging
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .models import IMAGENET_MEAN, IMAGENET_STD
from .pack import Pack, in_order
from .preprocess import square

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The split cannot be trained on; the message says why."""


@dataclass
class Augment:
    """The `augment` section of config.yaml: fastai's aug_transforms, in torchvision v2."""

    flip: bool
    max_rotate: float
    max_zoom: float
    min_scale: float
    max_lighting: float


def check_split(split: pd.DataFrame, classes: list[str]) -> None:
    """Fail before training when the split cannot give a classifier."""
    if len(classes) < 2:
        raise DataError("a classifier needs at least two classes")
    problems = []
    for label in classes:
        images = split[split["label"] == label]
        for part, is_valid in (("training", False), ("validation", True)):
            if not (images["is_valid"] == is_valid).any():
                problems.append(f"class {label!r} has no {part} image")
    if problems:
        raise DataError("; ".join(problems) + ". Add images, fix labels or change split.valid_pct.")


def train_transform(size: int, augment: Augment) -> v2.Compose:
    """The per-image part of training augmentation, on uint8 images; Collate does the rest."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(augment.min_scale, 1.0), antialias=True),
            v2.RandomHorizontalFlip(0.5 if augment.flip else 0.0),
        ]
    )


def prepare(image: Image.Image, size: int) -> torch.Tensor:
    """What the model sees at validation time (preprocess.PREPARE): uint8 (3, size, size)."""
    return v2.functional.pil_to_tensor(square(image, size))


def prepare_file(path: str, size: int) -> torch.Tensor:
    with Image.open(path) as image:
        return prepare(image, size)


class Collate:
    """Stack uint8 images into a float batch, augment it (training), normalise it.

    Rotation, zoom and lighting are drawn per image but applied to the whole batch at once, as
    fastai's batch transforms do: image by image they cost more than a fifth of a stage-1
    epoch on a CPU (bench/train.py).
    """

    def __init__(self, augment: Augment | None = None):
        self.augment = augment
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __call__(self, items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([image for image, _ in items]).float().div_(255)
        if self.augment is not None:
            images = self.lighting(self.rotate_and_zoom(images))
        targets = torch.tensor([target for _, target in items])
        return (images - self.mean) / self.std, targets

    def rotate_and_zoom(self, images: torch.Tensor) -> torch.Tensor:
        """Per image, a rotation within +-max_rotate degrees and a zoom up to max_zoom; the
        corners are filled by reflection, so no black wedges appear."""
        count = len(images)
        angle = torch.deg2rad((torch.rand(count) * 2 - 1) * self.augment.max_rotate)
        scale = 1 / (1 + torch.rand(count) * (self.augment.max_zoom - 1))
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        zero = torch.zeros(count)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)

    def lighting(self, images: torch.Tensor) -> torch.Tensor:
        """Per image, a random brightness and contrast factor in 1 +- max_lighting."""
        spread = self.augment.max_lighting
        factors = 1 + (torch.rand(2, len(images), 1, 1, 1) * 2 - 1) * spread
        images = images * factors[0]
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * factors[1] + mean).clamp_(0, 1)


class PackedImages(Dataset):
    """Images of the pack with their targets: the training view through `transform`, or
    (without one) the square view, read from the memory map as they are asked for."""

    def __init__(self, pack: Pack, positions, targets: list[int], transform=None):
        self.pack, self.positions, self.targets = pack, positions, targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = self.positions[index]
        if self.transform is None:
            return self.pack.square(position), self.targets[index]
        return self.transform(self.pack.presized(position)), self.targets[index]


def load_images(paths: list[str], load, threads: int) -> list[torch.Tensor]:
    """`load(path)` of every path, on `threads` threads (Pillow decodes without the GIL)."""
    return list(in_order(load, paths, threads))


def make_loaders(
    split: pd.DataFrame,
    classes: list[str],
    pack: Pack,
    batch_size: int,
    augment: Augment,
    seed: int,
) -> tuple[DataLoader, DataLoader]:
    """Training (shuffled, augmented, last partial batch dropped) and validation loaders over
    the pack's images of the split."""
    check_split(split, classes)
    index = {label: position for position, label in enumerate(classes)}
    datasets = []
    for is_valid in (False, True):
        rows = split[split["is_valid"] == is_valid]
        transform = None if is_valid else train_transform(pack.size, augment)
        targets = rows["label"].map(index).tolist()
        datasets.append(PackedImages(pack, pack.positions(rows["id"]), targets, transform))
    train, valid = datasets
    log.info("%d training and %d validation images from the pack", len(train), len(valid))
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train,
        batch_size,
        shuffle=True,
        drop_last=len(train) > batch_size,
        generator=generator,
        collate_fn=Collate(augment),
    )
    # Not fastai's twice the batch: a model that averages its mirror already runs each
    # validation image twice, and 256 images at once took a training job's peak memory at
    # 128 px 450 MB above its training steps', for no speed.
    valid_loader = DataLoader(valid, batch_size, collate_fn=Collate())
    return train_loader, valid_loader
