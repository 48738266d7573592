"""What the size of the audit's features buys: wrong labels found against the features' cost.

    python -m bench.audit_size [--sets hymenoptera pets370] [--sizes 224 192 160 128]
                               [--rates 0.05 0.2] [--seeds 0 1 2 3 4 5 6 7 8 9]

Needs the photos in ../shared/datasets. Per data set, the pretrained body's features of every
photo (`features.image_features`, as the `features` rule computes them) at each size, its CPU
time (every thread's, the median of three) against the first size's in the same run (run it
alone: beside another job torch's threads spin, and CPU time misleads as the clock does);
then, per share of labels flipped to another class (seeded) and seed, the audit alone
(`audit.audit`: no training, no final model) on each size's features, and the recall of the
flipped photos within its first k entries (k = twice the number flipped), the measure of
`bench.label_noise`. It prints the median recall over the seeds, its spread, and the cost
ratio.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from bench.label_noise import PHOTO_SETS, flip_labels, originals
from imgclf.audit import AuditSettings, audit
from imgclf.config import schema
from imgclf.features import image_features
from imgclf.neighbours import neighbour_distances

BATCH = 16  # scripts/features.py's
ARCH, CPU = "efficientnet_lite0", torch.device("cpu")
REPEATS = 3


def photos(name: str) -> pd.DataFrame:
    """id, path, label of every photo of the set (ants/bees: train and val together)."""
    found = originals(name, Path())  # the folder is only where the digits would be written
    return pd.DataFrame(
        {
            "id": [f"{index:05d}" for index in range(len(found))],
            "path": [str(path) for path, _, _ in found],
            "label": [label for _, label, _ in found],
        }
    )


def audit_recall(
    table: pd.DataFrame,
    features: np.ndarray,
    distances: np.ndarray,
    settings: AuditSettings,
    rate: float,
    seed: int,
) -> float:
    """The share of the flipped photos among the audit's first twice-as-many entries."""
    labels, flipped = flip_labels(table["label"].tolist(), rate, np.random.default_rng(seed))
    queue = audit(
        table.assign(label=labels, is_valid=False),
        table["id"].to_numpy(),
        features,
        distances,
        pd.DataFrame({"id": [], "group": []}, dtype=str),  # no near-duplicates planted
        sorted(table["label"].unique()),
        settings,
        seed,
    )
    flipped_ids = set(table["id"].iloc[sorted(flipped)])
    return len(set(queue["id"].head(2 * len(flipped))) & flipped_ids) / len(flipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="+", choices=PHOTO_SETS, default=list(PHOTO_SETS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 192, 160, 128])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    audit_schema = yaml.safe_load(Path(schema("config")).read_text())["properties"]["audit"]
    settings = AuditSettings(
        **{key: value["default"] for key, value in audit_schema["properties"].items()}
    )
    for name in args.sets:
        if not PHOTO_SETS[name].is_dir():
            raise SystemExit(f"{PHOTO_SETS[name]} is missing: the photos are not on this machine")
        table = photos(name)
        paths = table["path"].tolist()
        features, seconds = {}, {size: [] for size in args.sizes}
        # A first pass warms the caches and the allocator, which would bill the first size;
        # then each size's time is the median of REPEATS, taken in turns.
        image_features(paths[:BATCH], ARCH, args.sizes[0], BATCH, args.threads, CPU)
        for _ in range(REPEATS):
            for size in args.sizes:
                started = time.process_time()
                features[size] = image_features(paths, ARCH, size, BATCH, args.threads, CPU)
                seconds[size].append(time.process_time() - started)
        seconds = {size: statistics.median(times) for size, times in seconds.items()}
        baseline = args.sizes[0]
        for rate in args.rates:
            for size in args.sizes:
                distances = neighbour_distances(features[size], settings.neighbours)
                recalls = [
                    audit_recall(table, features[size], distances, settings, rate, seed)
                    for seed in args.seeds
                ]
                print(
                    f"{name} ({len(table)} photos, {table['label'].nunique()} classes), "
                    f"{rate:.0%} flipped, features at {size} px: audit recall "
                    f"{statistics.median(recalls):.2f} ({min(recalls):.2f}-{max(recalls):.2f}, "
                    f"{len(recalls)} seeds); features {seconds[size]:.1f} CPU s, "
                    f"{seconds[size] / seconds[baseline]:.2f}x those at {baseline} px",
                    flush=True,
                )


if __name__ == "__main__":
    main()
