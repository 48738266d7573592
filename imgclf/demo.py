"""The offline demo data set: scikit-learn's bundled handwritten digits, written out as images."""

from pathlib import Path

import numpy as np
from PIL import Image

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEMO_SETS = {"digits": DIGIT_NAMES}


def write_digits(dest: str | Path, size: int = 32) -> None:
    """Write the 1,797 8x8 digits as `dest/{name}/{index}.png`, dark ink on white, `size` px.

    They are enlarged so that they pass verify's minimum size like any small photo would.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    dest = Path(dest)
    for name in DIGIT_NAMES:
        (dest / name).mkdir(parents=True, exist_ok=True)
    # The data set stores ink intensity from 0 to 16.
    pixels = (255 - digits.images * (255 / 16)).round().astype(np.uint8)
    for index, (image, target) in enumerate(zip(pixels, digits.target, strict=True)):
        enlarged = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
        enlarged.save(dest / DIGIT_NAMES[target] / f"{index:04d}.png")
