"""split: apply the user's labels file to the manifest and split train/valid, stably."""

import hashlib
import re
from pathlib import Path

import pandas as pd

from .files import read_csv
from .labels import apply_labels

SPLIT_COLUMNS = ["id", "path", "label", "is_valid"]


def read_split(path: str | Path) -> pd.DataFrame:
    """split.csv with is_valid as booleans."""
    split = read_csv(path)
    split["is_valid"] = split["is_valid"] == "True"
    return split


def unit_hash(seed: int, image_id: str) -> float:
    """A number in [0, 1) that depends only on the seed and the image."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64


def split_images(
    images: pd.DataFrame,
    valid_pct: float,
    seed: int,
    valid_folder: str | None = None,
    groups: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Mark each image train or valid.

    With `valid_folder`, an image is valid when its source path has a folder of that name
    (`train/` and `valid/` trees, as many data sets ship). Otherwise an image is valid when a
    seeded hash of its id falls below `valid_pct`: its side depends on nothing else, so adding,
    removing or relabelling an image moves no other one. Each class therefore gets
    `valid_pct` of its images on average; a class of two or more always gets at least one
    train and one valid image (its lowest- or highest-hashed one is moved).

    `groups` (id -> group) names near-duplicates: a group is hashed by its name, so the same
    photo resized cannot sit on both sides and flatter the validation score. An image in no
    group is hashed by its own id, as before.
    """
    if valid_folder is not None:
        in_folder = images["source"].map(lambda source: valid_folder in re.split(r"[\\/]", source))
        return images.assign(is_valid=in_folder)
    unit = images["id"].map(lambda image_id: (groups or {}).get(image_id, image_id))
    score = unit.map(lambda key: unit_hash(seed, key))
    is_valid = score < valid_pct
    for _, members in score.groupby(images["label"]):
        if len(members) < 2:
            continue
        if not is_valid[members.index].any():
            is_valid[unit == unit[members.idxmin()]] = True
        if is_valid[members.index].all():
            is_valid[unit == unit[members.idxmax()]] = False
    return images.assign(is_valid=is_valid)


def make_split(
    manifest: pd.DataFrame,
    labels: pd.DataFrame | None,
    classes: list[str],
    valid_pct: float,
    seed: int,
    valid_folder: str | None = None,
    groups: dict[str, str] | None = None,
) -> pd.DataFrame:
    images = manifest if labels is None else apply_labels(manifest, labels, classes)
    split = split_images(images, valid_pct, seed, valid_folder, groups)
    return split[SPLIT_COLUMNS].sort_values("id", ignore_index=True)
