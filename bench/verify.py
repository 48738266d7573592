"""Benchmark of `verify` on generated 2-megapixel JPEGs.

    python -m bench.verify [--images 200] [--repeats 3]

Prints images/s of imgclf's verify (with the rule's threads, writing its outputs) beside a
plain one-thread PIL open -> load -> convert -> thumbnail loop, and their ratio (target: at
least 1.8x on a 2-core machine).
"""

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

from imgclf.verify import VerifySettings, verify_downloads

from .common import photo_like, report, timed

REPO = Path(__file__).resolve().parents[1]
SIZE = (1732, 1155)  # 2 megapixels, 3:2


def baseline(paths: list[Path], max_size: int) -> None:
    for path in paths:
        with Image.open(path) as image:
            image.load()
            image.convert("RGB").thumbnail((max_size, max_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    settings = VerifySettings(**yaml.safe_load((REPO / "config.yaml").read_text())["verify"])
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        paths = []
        for index in range(args.images):
            paths.append(work / f"{index:04d}.jpg")
            photo_like(index, SIZE).save(paths[-1], quality=90)
        megabytes = sum(path.stat().st_size for path in paths) / 1e6
        print(
            f"{args.images} JPEGs of {SIZE[0]}x{SIZE[1]} ({megabytes:.0f} MB), "
            f"max_size {settings.max_size}, {args.threads} threads"
        )
        table = pd.DataFrame(
            {
                "url": [str(p) for p in paths],
                "status": "ok",
                "id": [p.stem for p in paths],
                "path": [str(p) for p in paths],
                "error": "",
            }
        )
        ours, base = [], []
        for repeat in range(args.repeats):
            out = work / f"out{repeat}"
            ours.append(
                timed(lambda out=out: verify_downloads({"x": table}, out, settings, args.threads))
            )
            base.append(timed(lambda: baseline(paths, settings.max_size)))
    report("verify", ours, base, args.images, target=1.8)


if __name__ == "__main__":
    main()
