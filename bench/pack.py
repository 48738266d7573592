"""Training from the pack against training from images decoded into memory, on real photos.

    python -m bench.pack [--set hymenoptera] [--size 128] [--repeats 3] [--threads 2]

Needs ../shared/datasets. Prints, side by side in this one process:
- the seconds of a stage-1 epoch (frozen body, one-cycle, evaluation included) fed from the
  page-cached pack and from tensors decoded into memory beforehand (the loader the pack
  replaced), alternating, and their ratio (target: the pack within 5 %, a ratio >= 0.95);
- the seconds that decoding every image took each job that ran the model (lr_find twice, both
  training stages, interpret: five jobs), against writing the pack once.
"""

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import torch

from imgclf.data import Augment, make_loaders
from imgclf.models import build_model, freeze_body
from imgclf.pack import Pack, write_pack
from imgclf.sources import list_images
from imgclf.split import split_images
from imgclf.train import OneCycleSettings, fit_one_cycle, seed_everything

from .common import report, timed
from .in_memory import decoded_in_memory, in_memory_loaders
from .real_photos import DATASETS, classes_of

AUGMENT = Augment(flip=True, max_rotate=10, max_zoom=1.1, min_scale=0.5, max_lighting=0.2)
DECODING_JOBS = 5  # lr_find stage1 and stage2, train_stage1, finetune_stage2, interpret


def photos(name: str) -> tuple[pd.DataFrame, list[str]]:
    """The data set's split (its own val folder, or 20 % held out) and classes."""
    classes, split_settings = classes_of(name)
    rows = []
    for label, source in classes.items():
        for path in list_images(source["folder"], source.get("pattern"), label):
            rows.append({"id": path, "path": path, "label": label, "source": path})
    table = pd.DataFrame(rows).drop_duplicates("path")
    split = split_images(table, 0.2, seed=0, valid_folder=split_settings.get("valid_folder"))
    return split, list(classes)


def decode_all(split: pd.DataFrame, size: int, threads: int) -> dict:
    """(path, training) -> the image as the old loader decoded it, on `threads` threads."""
    keys = list(zip(split["path"], ~split["is_valid"], strict=True))
    with ThreadPoolExecutor(threads) as pool:
        images = pool.map(lambda key: decoded_in_memory(key[0], size, key[1]), keys)
        return dict(zip(keys, images, strict=True))


def stage1_model(classes: list[str], arch: str = "efficientnet_lite0", train_norms: bool = True):
    """Stage 1's model, seeded, as the benches on real photos train it."""
    seed_everything(0)
    model = build_model(arch, len(classes), pretrained=True)
    freeze_body(model, train_norms)
    return model


def epoch(model, loaders) -> float:
    """Seconds of one stage-1 epoch (one-cycle, evaluation included) of `model`."""
    train, valid = loaders()
    settings = OneCycleSettings(1, 25, 0.3, [0.95, 0.85], 0.01)
    cpu = torch.device("cpu")
    return timed(lambda: fit_one_cycle(model, train, valid, [3e-3] * 3, settings, "b", cpu))


def photo_bench_options(description: str) -> argparse.ArgumentParser:
    """The options of a bench that trains on one of the shared photo sets."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--set", default="hymenoptera", choices=["hymenoptera", "pets370"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser


def open_photo_set(args) -> tuple[pd.DataFrame, list[str]]:
    """The set's split and classes, torch's threads set; the bench ends where it is missing."""
    if not (DATASETS / args.set).exists():
        raise SystemExit(f"the photos are not at {DATASETS / args.set}")
    torch.set_num_threads(args.threads)
    return photos(args.set)


def main() -> None:
    args = photo_bench_options(__doc__).parse_args()
    split, classes = open_photo_set(args)
    paths = split["path"].tolist()
    with tempfile.TemporaryDirectory() as folder:
        files = (f"{folder}/images.u8", f"{folder}/index.npz")
        pack_seconds = timed(lambda: write_pack(paths, paths, args.size, *files, args.threads))
        pack = Pack(*files)
        decode_seconds, decoded = [], {}
        for _ in range(args.repeats):
            started = time.perf_counter()
            decoded = decode_all(split, args.size, args.threads)
            decode_seconds.append(time.perf_counter() - started)
        print(
            f"{args.set}: {len(split)} photos at {args.size} px, {args.threads} threads; "
            f"the pack is {os.path.getsize(files[0]) / 1e6:.0f} MB"
        )
        pack_loaders = lambda: make_loaders(split, classes, pack, 32, AUGMENT, 0)  # noqa: E731
        # A warm-up: torch's first epoch in a process is slower.
        epoch(stage1_model(classes), pack_loaders)
        ours, baseline = [], []
        for _ in range(args.repeats):
            ours.append(epoch(stage1_model(classes), pack_loaders))
            baseline.append(
                epoch(
                    stage1_model(classes),
                    lambda: in_memory_loaders(
                        split,
                        classes,
                        args.size,
                        32,
                        AUGMENT,
                        0,
                        lambda path, size, training: decoded[(path, training)],
                    ),
                )
            )
        print(
            f"epoch from the pack: {statistics.median(ours):.2f} s "
            f"({', '.join(f'{s:.2f}' for s in ours)}); from memory: "
            f"{statistics.median(baseline):.2f} s ({', '.join(f'{s:.2f}' for s in baseline)})"
        )
        report("stage-1 epoch, pack against memory", ours, baseline, len(split), target=0.95)
        decode = statistics.median(decode_seconds)
        print(
            f"decoding every image took {decode:.1f} s a job, {DECODING_JOBS} jobs "
            f"{DECODING_JOBS * decode:.1f} s; "
            f"writing the pack once took {pack_seconds:.1f} s on {args.threads} threads"
        )


if __name__ == "__main__":
    main()
