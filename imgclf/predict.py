"""Classify images with an exported model (ONNX Runtime and Pillow; no torch, no pickle).

    python -m imgclf.predict results/export IMAGE_OR_FOLDER... [--output predictions.csv]

prints or writes a CSV: one row per file with the label, its index, its probability and the
probability of every class. An entry that gives no prediction gets its error instead: a file
that is not an image, a FIFO, device or link loop (never waited on), an image with more
pixels than `verify.max_pixels` allowed in training (refused from its header, undecoded).
"""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnxruntime
import pandas as pd
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)
from PIL import Image, UnidentifiedImageError

from .files import (
    DamagedFile,
    FileFault,
    NotRegularFile,
    files_in,
    open_regular,
    read_json,
    write_csv,
)
from .preprocess import as_srgb, square

BATCH_SIZE = 32
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")  # download.MAGIC's


class TooManyPixels(ValueError):
    """An image larger than verify would have let into training: refused before decoding,
    as a 420 KB PNG can hold 144 million pixels (1.8 GB to decode)."""


@dataclass
class Prediction:
    """fastai's learn.predict: the label, its index, and the probability of every class."""

    label: str
    index: int
    probabilities: dict[str, float]


class Predictor:
    """An exported model folder (model.json beside model.onnx), ready to classify images."""

    def __init__(self, folder: str | Path, threads: int = 0, spinning: bool = True):
        """`spinning`: ONNX Runtime's threads wait for the next run busily, which makes runs
        back to back faster, and steals the CPU from any other work of the process."""
        folder = Path(folder)
        self.meta = read_json(folder / "model.json")
        self.classes = self.meta["classes"]
        # Models exported before model.json recorded verify's limit get Pillow's own.
        self.max_pixels = self.meta.get("max_pixels", Image.MAX_IMAGE_PIXELS)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's choice, one per core
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        model = folder / self.meta["file"]
        try:
            self.session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile) as error:
            raise DamagedFile(model, str(error)) from error

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The model's input for one decoded image: uint8 (3, size, size), as model.json says."""
        return np.asarray(square(as_srgb(image), self.meta["image_size"])).transpose(2, 0, 1)

    def file_pixels(self, path: str | Path) -> np.ndarray:
        """The model's input for one file (see image_pixels)."""
        with open_regular(path) as file:
            return self.image_pixels(file)

    def image_pixels(self, file: BinaryIO) -> np.ndarray:
        """The model's input for an image file's bytes. Only the formats that download keeps
        are decoded (Pillow's others include PostScript, which runs Ghostscript). A JPEG is
        decoded at the smallest scale that still covers the input size, and the photo is let
        go at once: a batch holds model-size arrays, not photos."""
        size = self.meta["image_size"]
        with Image.open(file, formats=IMAGE_FORMATS) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > self.max_pixels:
                raise TooManyPixels(
                    f"{width}x{height} is over the max_pixels of {self.max_pixels} that the "
                    "model was trained with"
                )
            image.draft(None, (size, size))
            return self.pixels(image)

    def probabilities(self, batch: list[np.ndarray]) -> np.ndarray:
        return self.session.run(None, {self.meta["input"]["name"]: np.stack(batch)})[0]

    def predict(self, image: str | Path | Image.Image) -> Prediction:
        in_memory = isinstance(image, Image.Image)
        pixels = self.pixels(image) if in_memory else self.file_pixels(image)
        return self.as_prediction(self.probabilities([pixels])[0])

    def as_prediction(self, probabilities: np.ndarray) -> Prediction:
        index = int(probabilities.argmax())
        by_class = dict(zip(self.classes, probabilities.tolist(), strict=True))
        return Prediction(self.classes[index], index, by_class)

    def predict_files(self, paths: list[str], batch_size: int = BATCH_SIZE) -> pd.DataFrame:
        """One row per path: label, index, probability and every class's probability, or the
        reason it could not be read (error)."""
        rows = []
        for start in range(0, len(paths), batch_size):
            batch, readable = [], []
            for path in paths[start : start + batch_size]:
                row = {"path": path, "error": ""}
                rows.append(row)  # in the order given; filled in below once its batch is run
                try:
                    batch.append(self.file_pixels(path))
                    readable.append(row)
                except (NotRegularFile, TooManyPixels, Image.DecompressionBombError) as error:
                    row["error"] = str(error)
                except UnidentifiedImageError as error:
                    row["error"] = f"not an image: {error}"
                except (OSError, ValueError, SyntaxError) as error:
                    row["error"] = f"cannot read: {error}"
            if batch:
                for row, probabilities in zip(readable, self.probabilities(batch), strict=True):
                    prediction = self.as_prediction(probabilities)
                    row.update(
                        label=prediction.label,
                        index=prediction.index,
                        probability=prediction.probabilities[prediction.label],
                        **prediction.probabilities,
                    )
        columns = ["path", "label", "index", "probability", *self.classes, "error"]
        return pd.DataFrame(rows, columns=columns).astype({"index": "Int64"})


def main(argv: list[str] | None = None, prog: str = "python -m imgclf.predict") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="the exported model's folder (results/export)")
    parser.add_argument("images", nargs="+", help="image files or folders of them")
    parser.add_argument("--output", help="CSV file to write (default: standard output)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: auto)")
    args = parser.parse_args(argv)
    if not (Path(args.model) / "model.json").is_file():
        parser.error(f"{args.model} has no model.json: give the folder that export wrote")
    missing = [path for path in args.images if not os.path.lexists(path)]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    try:
        predictor = Predictor(args.model, args.threads)
    except FileFault as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    table = predictor.predict_files(files_in(args.images))
    if args.output:
        write_csv(args.output, table)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
