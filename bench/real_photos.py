"""imgclf against fastai's lesson-1 recipe on the real photos in ../shared/datasets.

    python -m bench.real_photos [--sets pets370 hymenoptera] [--sizes 128 224] [--seeds 0 1 2]
                                [--arch efficientnet_lite0]

Needs the photos and the `bench` extra (fastai; `--no-fastai` compares imgclf's variants with
each other only). Per data set, size and seed, side by side on the same verified images and the
same validation images (imgclf's split.csv):

- imgclf as a user runs it: the workflow with its defaults, only the classes, image size and
  seed set (`defaults`: stage 1 at 3e-3, stage 2 `auto`), with both stages `auto` (`auto`),
  with stage 1's body training nothing (`frozen_body`: train_body_norms false), and with both
  stages' first epochs at three quarters of the size (`progressive`: start_size);
- fastai 2.8: `lr_find` valley -> `fit_one_cycle(4)` -> `unfreeze` -> `lr_find` ->
  `fit_one_cycle(2, slice(valley / 100, valley))`, with the same pretrained body (weights),
  size, batch size and epochs (fastai's own head, augmentation and batch-norm handling).
  `--arch` picks the body of both (an EfficientNet-Lite: the ones whose weights work offline).

It prints each run's validation error (imgclf: the model `final_model: best` chose, and stage
2's), the rates each chose, the seconds of an epoch and of both lr_find sweeps, and the ratios
(targets: imgclf's error lower on every data set and size, its epochs at least 1.25x faster,
its two sweeps together at most half of fastai's).
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from bench.common import run_workflow
from imgclf.models import (
    EFFICIENTNET_LITES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    efficientnet_lite_imagenet,
)

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
STAGE1_EPOCHS, STAGE2_EPOCHS = 4, 2
# The schema's defaults; both stages' max_lr auto; stage 1 over a body that trains nothing;
# both stages resized progressively from three quarters of the size.
VARIANTS = ("defaults", "auto", "frozen_body", "progressive")


# A pets photo's class is its file name's (Abyssinian_12.jpg: Abyssinian), as a user's
# folder source with this pattern reads it.
PETS_PATTERN = r"^([^/]+)_\d+\.jpg$"


def breed(path: Path) -> str:
    """A pets photo's class, read from its file name by the workflow's pattern."""
    return re.match(PETS_PATTERN, path.name).group(1)


def classes_of(name: str) -> tuple[dict, dict]:
    """The `classes` and `split` sections of a user's config for one of the data sets."""
    if name == "pets370":
        folder = DATASETS / "pets370" / "images"
        labels = sorted({breed(path) for path in folder.glob("*.jpg")})
        source = {"folder": str(folder), "pattern": PETS_PATTERN}
        return {label: source for label in labels}, {}
    folder = DATASETS / "hymenoptera"
    classes = {
        label: {"folder": str(folder), "pattern": f"({label})/"} for label in ("ants", "bees")
    }
    return classes, {"valid_folder": "val"}


def run_imgclf(
    workdir: Path, name: str, arch: str, size: int, seed: int, variant: str, threads: int
) -> dict:
    """The workflow in `workdir` (the data stages are shared by every run there)."""
    classes, split = classes_of(name)
    config = {"seed": seed, "classes": classes, "model": {"arch": arch, "image_size": size}}
    if split:
        config["split"] = split
    if variant == "auto":
        config["train_stage1"] = {"max_lr": "auto"}
    if variant == "frozen_body":
        config["train_stage1"] = {"train_body_norms": False}
    if variant == "progressive":
        for stage in ("train_stage1", "finetune_stage2"):
            config[stage] = {"start_size": size * 3 // 4}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_workflow(workdir, threads, "results/interpret/metrics.json")
    results = workdir / "results"
    metrics = json.loads((results / "interpret" / "metrics.json").read_text())
    stages = {
        stage: json.loads((results / "train" / stage / "model.json").read_text())
        for stage in ("stage1", "stage2")
    }
    histories = {
        stage: pd.read_csv(results / "train" / stage / "history.csv")
        for stage in ("stage1", "stage2")
    }
    # Stage 1 is swept only when its max_lr is auto; an earlier run's timing may lie there.
    swept = ("stage1", "stage2") if variant == "auto" else ("stage2",)
    sweeps = [workdir / "benchmarks" / "lr_find" / f"{stage}.tsv" for stage in swept]
    return {
        "error": metrics["error_rate"],
        "stage": metrics["stage"],
        "stage2_error": stages["stage2"]["metrics"]["error_rate"],
        "rates": (
            stages["stage1"]["peak_learning_rates"][-1],
            stages["stage2"]["peak_learning_rates"][-1],
        ),
        "epoch_seconds": pd.concat(histories.values())["seconds"].median(),
        "stage1_epoch_seconds": histories["stage1"]["seconds"].median(),
        "sweep_seconds": sum(
            float(pd.read_csv(path, sep="\t")["s"].iloc[0]) for path in sweeps if path.exists()
        ),
    }


def run_fastai(
    split_csv: Path, workdir: Path, arch: str, size: int, seed: int, threads: int
) -> dict:
    """fastai's lesson-1 recipe on imgclf's split, with the same pretrained body."""
    from fastai.callback.core import Callback
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        aug_transforms,
        error_rate,
        set_seed,
        vision_learner,
    )

    class EpochTimer(Callback):
        def before_fit(self):
            self.seconds = []

        def before_epoch(self):
            self.started = time.perf_counter()

        def after_epoch(self):
            self.seconds.append(time.perf_counter() - self.started)

    torch.set_num_threads(threads)
    set_seed(seed, reproducible=True)
    split = pd.read_csv(split_csv)
    # The lesson's presizing: Resize(460) then aug_transforms(size=224), scaled to `size`.
    dls = ImageDataLoaders.from_df(
        split,
        path=workdir,
        fn_col="path",
        label_col="label",
        valid_col="is_valid",
        item_tfms=Resize(round(size * 460 / 224)),
        batch_tfms=[
            *aug_transforms(size=size, min_scale=0.75),
            Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD),
        ],
        bs=64,
        seed=seed,
    )
    body = efficientnet_lite_imagenet(arch)
    # Everything before timm's pooling and classifier is the body, as fastai's cut would find.
    learn = vision_learner(dls, lambda pretrained: body, cut=-2, metrics=error_rate)
    timer = EpochTimer()
    learn.add_cb(timer)
    with learn.no_bar(), learn.no_logging():
        started = time.perf_counter()
        lr1 = learn.lr_find(show_plot=False).valley
        sweep_seconds = time.perf_counter() - started
        learn.fit_one_cycle(STAGE1_EPOCHS, lr1)
        epochs = list(timer.seconds)
        learn.unfreeze()
        started = time.perf_counter()
        lr2 = learn.lr_find(show_plot=False).valley
        sweep_seconds += time.perf_counter() - started
        learn.fit_one_cycle(STAGE2_EPOCHS, slice(lr2 / 100, lr2))
        epochs += timer.seconds
        _, error = learn.validate()
    return {
        "error": float(error),
        "rates": (lr1, lr2),
        "sweep_seconds": sweep_seconds,
        "epoch_seconds": statistics.median(epochs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="+", default=["pets370", "hymenoptera"])
    parser.add_argument("--arch", default="efficientnet_lite0", choices=EFFICIENTNET_LITES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--no-fastai", action="store_true", help="compare imgclf's variants with each other only"
    )
    args = parser.parse_args()
    if not DATASETS.exists():
        sys.exit(f"the real photos are not at {DATASETS}")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets:
            workdir = Path(scratch) / name
            workdir.mkdir()
            for size in args.sizes:
                for seed in args.seeds:
                    run = {"set": name, "size": size, "seed": seed}
                    for variant in args.variants:
                        run[variant] = run_imgclf(
                            workdir, name, args.arch, size, seed, variant, args.threads
                        )
                    if not args.no_fastai:
                        split = workdir / "results" / "split" / "split.csv"
                        run["fastai"] = run_fastai(
                            split, workdir, args.arch, size, seed, args.threads
                        )
                    for variant in args.variants:
                        print_run(run, variant)
                    runs.append(run)
    if not args.no_fastai:
        summarise(runs, args.variants)
    compare_variants(runs, args.variants)


def print_run(run: dict, variant: str) -> None:
    ours = run[variant]

    def rates(pair):
        return f"{pair[0]:.2e}/{pair[1]:.2e}"

    print(
        f"{run['set']} {run['size']} px seed {run['seed']}: error imgclf {variant} "
        f"{ours['error']:.3f} ({ours['stage']}; stage 2 {ours['stage2_error']:.3f}) at "
        f"{rates(ours['rates'])}; epoch {ours['epoch_seconds']:.1f} s (stage 1 "
        f"{ours['stage1_epoch_seconds']:.1f} s)",
        flush=True,
    )
    if "fastai" in run:
        fastai = run["fastai"]
        speed = fastai["epoch_seconds"] / ours["epoch_seconds"]
        print(
            f"    fastai {fastai['error']:.3f} at {rates(fastai['rates'])}; epoch "
            f"{fastai['epoch_seconds']:.1f} s (imgclf's {speed:.2f}x faster); sweeps "
            f"{ours['sweep_seconds']:.1f} s vs {fastai['sweep_seconds']:.1f} s "
            f"({ours['sweep_seconds'] / fastai['sweep_seconds']:.2f} of fastai's)",
            flush=True,
        )


def compare_variants(runs: list[dict], variants: list[str]) -> None:
    """Each variant against the first, seed by seed: the error's difference (in points) and
    how many times faster its stage-1 epochs are."""
    first = variants[0]
    for (name, size), group in by_set_and_size(runs).items():
        for variant in variants[1:]:
            points = pd.Series(
                [100 * (run[variant]["error"] - run[first]["error"]) for run in group]
            )
            speed = pd.Series(
                [
                    run[first]["stage1_epoch_seconds"] / run[variant]["stage1_epoch_seconds"]
                    for run in group
                ]
            )
            print(
                f"{name} {size} px, {len(group)} seeds, {variant} against {first}: error "
                f"{points.median():+.1f} points (median; {points.min():+.1f} to "
                f"{points.max():+.1f}), stage-1 epochs {speed.median():.2f}x faster "
                f"({speed.min():.2f}-{speed.max():.2f})"
            )


def summarise(runs: list[dict], variants: list[str]) -> None:
    """Median and spread per data set, size and variant, and whether each target is met."""
    for (name, size), group in by_set_and_size(runs).items():
        seeds = ", ".join(str(run["seed"]) for run in group)
        fastai = pd.Series([run["fastai"]["error"] for run in group])
        for variant in variants:
            errors = pd.Series([run[variant]["error"] for run in group])
            speed = statistics.median(
                run["fastai"]["epoch_seconds"] / run[variant]["epoch_seconds"] for run in group
            )
            sweeps = statistics.median(
                run[variant]["sweep_seconds"] / run["fastai"]["sweep_seconds"] for run in group
            )
            print(
                f"{name} {size} px, seeds {seeds}, imgclf {variant}: error median "
                f"{errors.median():.3f} ({errors.min():.3f}-{errors.max():.3f}) vs fastai "
                f"{fastai.median():.3f} ({fastai.min():.3f}-{fastai.max():.3f}): lower "
                f"{verdict(errors.median() < fastai.median())}; epochs {speed:.2f}x faster "
                f"(>= 1.25: {verdict(speed >= 1.25)}); its sweeps {sweeps:.2f} of fastai's "
                f"two (<= 0.5: {verdict(sweeps <= 0.5)})"
            )


def by_set_and_size(runs: list[dict]) -> dict[tuple[str, int], list[dict]]:
    groups = {}
    for run in runs:
        groups.setdefault((run["set"], run["size"]), []).append(run)
    return groups


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


if __name__ == "__main__":
    main()
