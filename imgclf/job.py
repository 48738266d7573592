"""What every model-running rule shares: the data, the model, the seed and the CPU threads
(`Job`), and which trained stage interpret, export and predict use (`ChosenModel`)."""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import Augment, make_loaders
from .files import read_json
from .models import Classifier, build_model, freeze_body, unfreeze
from .pack import Pack, PackError
from .split import read_split
from .train import load_weights, pick_device, seed_everything

log = logging.getLogger(__name__)


def start_torch(threads: int) -> torch.device:
    """Cap torch's threads at the job's and the cores'; the device to run on."""
    # More threads than cores (--cores 4 on a 2-core machine) makes torch much slower.
    torch.set_num_threads(min(threads, len(os.sched_getaffinity(0))))
    device = pick_device()
    log.info("device: %s, %d CPU threads", device, torch.get_num_threads())
    return device


@dataclass
class ModelSettings:
    """The `model` section of config.yaml."""

    arch: str
    pretrained: bool
    image_size: int
    batch_size: int


@dataclass
class Job:
    """The split to learn from, the pack of its images (its images file and index), its
    classes, the model and augmentation, the seed, threads."""

    split: str
    pack: tuple[str, str]
    classes: list[str]
    model: ModelSettings
    augment: Augment
    seed: int
    threads: int

    def setup(self) -> torch.device:
        """Seed, cap torch's threads; the device to run on."""
        seed_everything(self.seed)
        return start_torch(self.threads)

    def open_pack(self) -> Pack:
        """The pack, checked to hold the images at the model's size."""
        pack = Pack(*self.pack)
        if pack.size != self.model.image_size:
            raise PackError(
                f"{self.pack[1]} holds images at {pack.size} px, the model sees "
                f"{self.model.image_size} px"
            )
        return pack

    def start(self):
        """Set up, open the data; returns (train_loader, valid_loader, device)."""
        device = self.setup()
        train_loader, valid_loader = make_loaders(
            read_split(self.split),
            self.classes,
            self.open_pack(),
            self.model.batch_size,
            self.augment,
            self.seed,
        )
        return train_loader, valid_loader, device

    def build(
        self, stage1_weights: str | Path | None = None, train_body_norms: bool = True
    ) -> Classifier:
        """Stage 1's model (pretrained body frozen, but for its norms with `train_body_norms`)
        or, given its weights, stage 2's (unfrozen)."""
        if stage1_weights is None:
            model = build_model(self.model.arch, len(self.classes), self.model.pretrained)
            freeze_body(model, train_body_norms)
        else:
            model = build_model(self.model.arch, len(self.classes), pretrained=False)
            load_weights(model, stage1_weights)
            model.keeps_body_statistics = self.model.pretrained
            unfreeze(model)
        model.averages_mirror = self.augment.flip
        return model


def make_job(split: str, pack: list[str], params: dict, threads: int) -> Job:
    """A Job from the rules' `split` and `pack` inputs and `job` parameter (see
    workflow/rules/common.smk)."""
    images, index = pack
    return Job(
        split=split,
        pack=(images, index),
        classes=params["classes"],
        model=ModelSettings(**params["model"]),
        augment=Augment(**params["augment"]),
        seed=params["seed"],
        threads=threads,
    )


@dataclass
class ChosenModel:
    """The trained stage that interpret, export and predict use, and why."""

    stage: str
    folder: Path
    meta: dict
    reason: str
    versus_stage1: dict | None = None  # when stage 2 was trained: see stages.versus_stage1

    @property
    def weights(self) -> Path:
        return self.folder / "model.safetensors"


def choose_model(choice: str, files: list[str]) -> ChosenModel:
    """The stage named by `final_model` (stage1, stage2), or `best`: the lower validation loss.

    `files` are the model.json and model.safetensors of the stages that the choice needs: one
    stage, or both for `best`.
    """
    metas = {}
    for path in map(Path, files):
        if path.name == "model.json":
            meta = read_json(path)
            metas[meta["stage"]] = (path.parent, meta)
    versus_stage1 = metas["stage2"][1].get("versus_stage1") if "stage2" in metas else None
    if choice != "best":
        folder, meta = metas[choice]
        return ChosenModel(choice, folder, meta, f"final_model is {choice}", versus_stage1)
    losses = {stage: meta["metrics"]["valid_loss"] for stage, (_, meta) in sorted(metas.items())}
    stage = min(losses, key=losses.get)  # on a tie, stage 1: the model that changed less
    compared = ", ".join(f"{name} {loss:.4f}" for name, loss in losses.items())
    reason = f"final_model is best: {stage} has the lower validation loss ({compared})"
    return ChosenModel(stage, *metas[stage], reason, versus_stage1)
