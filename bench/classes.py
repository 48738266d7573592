"""Many classes: the data half on C classes of K local images against 10 classes of the same
number of images, so that what grows with the classes alone shows.

    python -m bench.classes [--classes 1000] [--per-class 10] [--cores 2]

Prints the seconds of planning (`snakemake -n`) and of the data half (`--until verify`) for
both, and their ratios. Targets at 1,000 classes of 10 images on 2 cores: planning under 10 s,
the data half under 3 minutes.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .common import run_workflow


def write_classes(workdir: Path, classes: int, per_class: int) -> None:
    config = {"classes": {}}
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = workdir / "photos" / f"class{label:04d}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
        config["classes"][f"class{label:04d}"] = {"folder": str(folder)}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    images = args.classes * args.per_class
    runs = {"many": (args.classes, args.per_class), "few": (10, images // 10)}
    seconds = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (classes, per_class) in runs.items():
            workdir = Path(work) / name
            write_classes(workdir, classes, per_class)
            plan = run_workflow(workdir, args.cores, "-n")
            data = run_workflow(workdir, args.cores, "--until", "verify")
            seconds[name] = (plan, data)
            print(
                f"{classes} classes of {per_class} images: planning {plan:.1f} s, "
                f"--until verify {data:.1f} s"
            )
    (plan, data), (base_plan, base_data) = seconds["many"], seconds["few"]
    print(
        f"{args.classes} classes against 10 on {images} images: planning {plan / base_plan:.2f}x, "
        f"the data half {data / base_data:.2f}x"
    )
    print(
        f"targets: planning under 10 s ({'met' if plan < 10 else 'NOT met'}), the data half "
        f"under 180 s ({'met' if data < 180 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
