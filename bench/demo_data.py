"""The demo's digits as a split table and a pack, written once into a temporary folder."""

import tempfile
from pathlib import Path

import pandas as pd
import yaml

from imgclf.demo import write_digits
from imgclf.files import read_csv
from imgclf.job import make_job
from imgclf.pack import write_pack
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
    table = read_csv(split)
    pack = [str(folder / "images.u8"), str(folder / "index.npz")]
    size = config["model"]["image_size"]
    write_pack(table["path"].tolist(), table["id"].tolist(), size, *pack, threads)
    params = {
        "classes": classes,
        "seed": config["seed"] if seed is None else seed,
        "model": config["model"],
        "augment": config["augment"],
    }
    return make_job(split, pack, params, threads), config


def temporary_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory()
