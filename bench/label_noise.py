"""How well the review queue finds wrong labels and near-duplicates, against top losses.

    python -m bench.label_noise [--sets hymenoptera digits pets370] [--rates 0.05 0.2] [--seed 0]
                                [--image-size 128]

Per data set and share of flipped labels, in one temporary workdir each: a copy of the photos
(ants/bees from ../shared/datasets with their own train/val folders, and the 37-breed pets
sample there with labels from file names, both with the schema's defaults but trained at
`--image-size`, 128 px unless told; the demo's digits as config.yaml has them) with that
share of labels moved to another class (seeded), and `--duplicates` resized (0.7x, or 1.5x
for the 32 px digits), re-encoded copies of photos filed under another class. The workflow
runs to the review queue (4 + 2 epochs). It prints, for k = twice the number flipped, the
recall and precision of the flipped images among the first k entries of the queue, beside
the same for today's ranking (every image by the final model's loss); how many planted
copies share a near-duplicate group with their original; and the audit's cost (the features
and audit rules, each as its benchmark file times it, start-up included) against one stage-1
epoch of the same run, beside the features rule's floor: the same rule run again in the same
workdir on a manifest without images (starting Python and Snakemake's script, importing torch
and timm, building and folding the body), which no change to how images are read or run can
remove.
Targets: recall >= 0.8 and >= 1.5x top losses'; every copy found; cost <= 1 epoch.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from bench.common import run_workflow
from bench.real_photos import DATASETS, breed
from imgclf.demo import write_digits

REPO = Path(__file__).resolve().parents[1]
HYMENOPTERA = DATASETS / "hymenoptera"
PETS = DATASETS / "pets370" / "images"
PHOTO_SETS = {"hymenoptera": HYMENOPTERA, "pets370": PETS}
SUFFIXES = {".jpg", ".jpeg", ".png"}


def originals(name: str, folder: Path) -> list[tuple[Path, str, str]]:
    """(file, class, side folder or '') of every photo of the set."""
    if name == "hymenoptera":
        return [
            (path, path.parent.name, path.parent.parent.name)
            for path in sorted(HYMENOPTERA.rglob("*"))
            if path.suffix.lower() in SUFFIXES
        ]
    if name == "pets370":
        return [(path, breed(path), "") for path in sorted(PETS.glob("*.jpg"))]
    write_digits(folder / "digits")
    return [(path, path.parent.name, "") for path in sorted((folder / "digits").rglob("*.png"))]


def flip_labels(labels: list[str], rate: float, rng: np.random.Generator) -> tuple[list, set]:
    """`labels` with `rate` of them moved to another class (drawn by `rng`), and the indices
    of those moved."""
    classes = sorted(set(labels))
    flipped = set(rng.choice(len(labels), round(rate * len(labels)), replace=False).tolist())
    noisy = [
        rng.choice([other for other in classes if other != label]) if index in flipped else label
        for index, label in enumerate(labels)
    ]
    return noisy, flipped


def plant(name: str, workdir: Path, rate: float, duplicates: int, seed: int) -> dict:
    """Write the noisy photo set under workdir/photos/[side/]class/; return what was planted."""
    photos = originals(name, workdir)
    classes = sorted({label for _, label, _ in photos})
    rng = np.random.default_rng(seed)
    labels, flipped = flip_labels([label for _, label, _ in photos], rate, rng)
    planted = {"flipped": [], "copies": [], "classes": classes}
    for index, ((path, _, side), label) in enumerate(zip(photos, labels, strict=True)):
        target = workdir / "photos" / side / label / f"{index}{path.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        if index in flipped:
            planted["flipped"].append(target.relative_to(workdir).as_posix())
    kept = [index for index in range(len(photos)) if index not in flipped]
    for index in rng.choice(kept, duplicates, replace=False).tolist():
        path, label, side = photos[index]
        other = rng.choice([name for name in classes if name != label])
        copy = workdir / "photos" / side / other / f"copy-{index}.jpg"
        with Image.open(path) as image:
            width, height = image.size
            # Smaller when that keeps it above verify's min_size (the photos), else larger
            # (the 32 px digits).
            scale = 0.7 if min(width, height) * 0.7 >= 64 else 1.5
            resized = image.convert("RGB").resize((round(width * scale), round(height * scale)))
            resized.save(copy, quality=75)
        original = workdir / "photos" / side / label / f"{index}{path.suffix.lower()}"
        planted["copies"].append(
            (original.relative_to(workdir).as_posix(), copy.relative_to(workdir).as_posix())
        )
    return planted


def config_for(name: str, classes: list[str], seed: int, image_size: int) -> dict:
    """The demo's config.yaml for the digits; for the photos, what a user of photos writes:
    the schema's defaults (augmentation, the audit's 224 px features), trained at
    `image_size`."""
    if name == "hymenoptera":
        config = {"model": {"image_size": image_size}, "split": {"valid_folder": "val"}}
    elif name == "pets370":
        config = {"model": {"image_size": image_size}}
    else:
        config = yaml.safe_load((REPO / "config.yaml").read_text())
    pattern = "({})/"
    config["classes"] = {
        label: {"folder": "photos", "pattern": pattern.format(label)} for label in classes
    }
    config["seed"] = seed
    config["interpret"] = {"review": 1_000_000}  # every image in the queue: top losses' ranking
    return config


def run(name: str, rate: float, duplicates: int, seed: int, cores: int, image_size: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        planted = plant(name, workdir, rate, duplicates, seed)
        config = config_for(name, planted["classes"], seed, image_size)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        run_workflow(workdir, cores, "results/interpret/review.csv")
        result = measure(workdir, planted)
        result["floor_seconds"] = features_floor(workdir, cores)
        return result


def features_floor(workdir: Path, cores: int) -> float:
    """Seconds of the features rule, as its benchmark file times it, on a manifest of no
    images: what the rule costs before it reads one. Run after `measure`, as it overwrites
    the manifest and the features."""
    manifest = workdir / "results/verify/manifest.csv"
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")
    features = "results/features/features.npz"
    run_workflow(workdir, cores, features, "--allowed-rules", "features", "--forcerun", "features")
    return rule_seconds(workdir, "features")


def rule_seconds(workdir: Path, rule: str) -> float:
    return float(pd.read_csv(workdir / f"benchmarks/{rule}/{rule}.tsv", sep="\t")["s"].iloc[0])


def measure(workdir: Path, planted: dict) -> dict:
    results = workdir / "results"
    manifest = pd.read_csv(results / "verify/manifest.csv", dtype=str)
    ids = dict(zip(manifest["source"], manifest["id"], strict=True))
    flipped = {ids[source] for source in planted["flipped"] if source in ids}
    queue = pd.read_csv(results / "interpret/review.csv", dtype=str, keep_default_na=False)
    by_loss = queue.assign(loss=queue["loss"].astype(float)).sort_values("loss", ascending=False)
    k = 2 * len(flipped)
    found = {
        ranking: len(set(table["id"].head(k)) & flipped)
        for ranking, table in (("queue", queue), ("top_losses", by_loss))
    }
    groups = pd.read_csv(results / "features/near_duplicates.csv", dtype=str)
    group = dict(zip(groups["id"], groups["group"], strict=True))
    copies_found = sum(
        ids.get(original) in group and group.get(ids.get(original)) == group.get(ids.get(copy))
        for original, copy in planted["copies"]
    )
    seconds = {rule: rule_seconds(workdir, rule) for rule in ("features", "audit")}
    history = pd.read_csv(results / "train/stage1/history.csv")
    return {
        "flipped": len(flipped),
        "k": k,
        "recall": {ranking: count / len(flipped) for ranking, count in found.items()},
        "precision": {ranking: count / k for ranking, count in found.items()},
        "flagged": int((queue["issue"] != "top_loss").sum()),
        "copies": len(planted["copies"]),
        "copies_found": int(copies_found),
        "seconds": seconds,
        "epoch_seconds": float(history["seconds"].median()),
        "error_rate": json.loads((results / "interpret/metrics.json").read_text())["error_rate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="+", default=["hymenoptera", "digits"])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--duplicates", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--image-size", type=int, default=128, help="the photos' model.image_size (not the digits')"
    )
    args = parser.parse_args()
    for name in set(args.sets) & PHOTO_SETS.keys():
        if not PHOTO_SETS[name].is_dir():
            sys.exit(f"{PHOTO_SETS[name]} is missing: the photos are not on this machine")
    for name in args.sets:
        for rate in args.rates:
            result = run(name, rate, args.duplicates, args.seed, args.cores, args.image_size)
            recall, precision = result["recall"], result["precision"]
            ratio = recall["queue"] / max(recall["top_losses"], 1e-9)
            seconds = result["seconds"]
            cost = sum(seconds.values()) / result["epoch_seconds"]
            floor = result["floor_seconds"]
            met = recall["queue"] >= 0.8 and ratio >= 1.5
            size = f" at {args.image_size} px" if name in PHOTO_SETS else ""
            print(
                f"{name}{size} {rate:.0%} flipped ({result['flipped']}), k={result['k']}: "
                f"queue recall {recall['queue']:.2f} precision {precision['queue']:.2f}; "
                f"top losses recall {recall['top_losses']:.2f} precision "
                f"{precision['top_losses']:.2f}; {ratio:.2f}x "
                f"({'met' if met else 'NOT met'}: >= 0.8 and >= 1.5x). "
                f"{result['flagged']} images flagged by the audit. "
                f"Near-duplicates: {result['copies_found']} of {result['copies']} copies found. "
                f"Audit {sum(seconds.values()):.1f} s (features {seconds['features']:.1f} s, "
                f"once per image set; audit {seconds['audit']:.1f} s, after every labels edit) "
                f"= {cost:.2f} stage-1 epochs of {result['epoch_seconds']:.1f} s "
                f"({'met' if cost <= 1 else 'NOT met'}: <= 1); the features rule's floor, "
                f"on no images, {floor:.1f} s = {floor / result['epoch_seconds']:.2f} epochs. "
                f"Error rate {result['error_rate']:.3f}.",
                flush=True,
            )


if __name__ == "__main__":
    main()
