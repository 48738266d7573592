"""The demo's digits as a split table, written once into a temporary folder."""

import tempfile
from pathlib import Path

import pandas as pd
import yaml

from imgclf.demo import write_digits
from imgclf.job import make_job
from imgclf.sources import list_images
from imgclf.split import split_images

REPO = Path(__file__).resolve().parents[1]


def demo_split(folder: Path) -> tuple[str, list[str]]:
    """Write the digits into `folder` and a split CSV beside them; (split path, classes)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    write_digits(folder / "digits")
    classes = list(config["classes"])
    rows = [
        {"id": Path(path).stem + label, "path": path, "label": label, "source": path}
        for label in classes
        for path in list_images(folder / "digits" / label)
    ]
    split = split_images(pd.DataFrame(rows), config["split"]["valid_pct"], config["seed"])
    split.to_csv(folder / "split.csv", index=False)
    return str(folder / "split.csv"), classes


def demo_job(folder: Path, threads: int, seed: int | None = None):
    """A training Job with the demo config's model and augmentation."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    split, classes = demo_split(folder)
    params = {
        "classes": classes,
        "seed": config["seed"] if seed is None else seed,
        "model": config["model"],
        "augment": config["augment"],
    }
    return make_job(split, params, threads), config


def temporary_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory()
