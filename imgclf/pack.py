"""pack: every verified image decoded once, at the sizes the model reads it, into one flat file.

Decoding a JPEG costs more than a training step's share of it on a CPU, and every job that
runs the model (lr_find twice, two training stages, interpret, export) would decode the whole
set again; holding the decoded set in memory instead grows a job by 290 KB an image at 224 px
(29 GB at 100k images). The pack is written once after verify and read by every job through a
memory map: the pages live in the kernel's page cache, shared by the jobs, read back from disk
when memory is short, and a job's own (anonymous) memory does not grow with the images.

Each image is stored twice, as the two views the model takes of it (see data.py):
  - presized: the whole image, its shorter side round(size * PRESIZE), for training crops;
  - square: its centre square at size x size, for validation, interpretation and export.
Both are uint8, channels first, exactly as decoding the file gives them, so training from the
pack gives the same batches and weights as decoding the files did.

The files: `images.u8` (raw bytes, image after image: presized then square) and `index.npz`
(ids, offsets, heights and widths of the presized views, size; numbers and fixed-width text,
read with allow_pickle=False), which numpy reads without this project.
"""

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import v2
from tqdm import tqdm

from .files import DamagedFile, FileFault, atomic_path, read_arrays, write_arrays
from .preprocess import square

log = logging.getLogger(__name__)

PRESIZE = 1.25  # training images are kept this much larger than the crop, for crop and zoom
# Images decoded ahead of the writer: enough to keep every thread busy, few enough that the
# writer's memory does not depend on the number of images.
IN_FLIGHT = 64


def presized_side(size: int) -> int:
    """The shorter side of the training view for a model that sees size x size crops."""
    return round(size * PRESIZE)


def views(image: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The presized and square views of an image: uint8 (3, H, W) and (3, size, size)."""
    image = image.convert("RGB")
    scale = presized_side(size) / min(image.size)
    presized = image
    if scale < 1:
        shape = (round(image.width * scale), round(image.height * scale))
        presized = image.resize(shape, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return (
        v2.functional.pil_to_tensor(presized).numpy(),
        v2.functional.pil_to_tensor(square(image, size)).numpy(),
    )


def file_views(path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The views of a verified image; verify decoded it, so an error here is a damaged file."""
    try:
        with Image.open(path) as image:
            return views(image, size)
    except (OSError, SyntaxError, ValueError) as error:
        raise DamagedFile(path, str(error)) from error


def in_order(load, items: Sequence, threads: int) -> Iterator:
    """`load(item)` of every item, in order, on `threads` threads (Pillow decodes without the
    GIL), with at most IN_FLIGHT results waiting: ThreadPoolExecutor.map would submit all."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for start in range(0, len(items), IN_FLIGHT):
            yield from pool.map(load, items[start : start + IN_FLIGHT])


def write_pack(
    paths: list[str], ids: list[str], size: int, images_file: str, index_file: str, threads: int
) -> None:
    """Decode every image once, on `threads` threads, and append its views to `images_file`
    (one writer, in the order given); then write the index. Each file appears only whole."""
    offsets = np.zeros(len(paths), dtype=np.int64)
    heights = np.zeros(len(paths), dtype=np.int32)
    widths = np.zeros(len(paths), dtype=np.int32)
    written = 0
    with atomic_path(images_file) as tmp, open(tmp, "wb") as file:
        decoded = in_order(lambda path: file_views(path, size), paths, threads)
        for position, (presized, centre) in enumerate(
            tqdm(decoded, total=len(paths), unit="img", mininterval=5)
        ):
            offsets[position] = written
            _, heights[position], widths[position] = presized.shape
            file.write(presized.tobytes())
            file.write(centre.tobytes())
            written += presized.nbytes + centre.nbytes
    write_arrays(
        index_file,
        ids=np.array(ids, dtype=str),
        offsets=offsets,
        heights=heights,
        widths=widths,
        size=np.array(size),
    )
    log.info("packed %d images at %d px: %.1f MB", len(paths), size, written / 1e6)


class PackError(FileFault, ValueError):
    """The pack does not hold what a job needs; the message says what to rerun."""


class Pack:
    """A written pack, memory-mapped: its views as tensors, read on demand."""

    def __init__(self, images_file: str | Path, index_file: str | Path):
        index = read_arrays(index_file)
        try:
            self.ids = index["ids"]
            self.offsets = index["offsets"]
            self.heights = index["heights"]
            self.widths = index["widths"]
            self.size = int(index["size"])
        except KeyError as error:
            raise DamagedFile(index_file, f"no array {error}") from error
        expected = int((3 * self.heights.astype(np.int64) * self.widths + 3 * self.size**2).sum())
        found = Path(images_file).stat().st_size
        if found != expected:  # each read past a cut-short file would fail, or read another's
            raise DamagedFile(images_file, f"{found} bytes where its index has {expected}")
        # An empty file cannot be mapped; an empty pack has no image to read.
        self.data = np.zeros(0, np.uint8) if not found else np.memmap(images_file, np.uint8, "r")

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Each id's place in the pack; a PackError names ids that it does not hold."""
        places = pd.Index(self.ids).get_indexer(list(ids))
        if (places < 0).any():
            missing = [image_id for image_id, place in zip(ids, places, strict=True) if place < 0]
            raise PackError(
                f"{len(missing)} images of the split are not in the pack (first: {missing[0]}): "
                "it is older than the manifest; rerun the pack rule"
            )
        return places

    def read(self, start: int, shape: tuple[int, ...]) -> torch.Tensor:
        # A copy: the map is read-only, and the tensor outlives the page it came from.
        count = int(np.prod(shape))
        return torch.from_numpy(np.array(self.data[start : start + count])).view(shape)

    def presized(self, position: int) -> torch.Tensor:
        """The training view: uint8 (3, H, W), the shorter side presized_side(size)."""
        shape = (3, int(self.heights[position]), int(self.widths[position]))
        return self.read(int(self.offsets[position]), shape)

    def square(self, position: int) -> torch.Tensor:
        """The validation view: uint8 (3, size, size), the centre square."""
        presized = 3 * int(self.heights[position]) * int(self.widths[position])
        return self.read(int(self.offsets[position]) + presized, (3, self.size, self.size))

    def squares(self, positions: Sequence[int]) -> "Squares":
        return Squares(self, positions)


class Squares(Sequence):
    """The square views of some images of a pack, as a list of tensors that is read only
    where it is indexed: the whole split's images without holding them in memory."""

    def __init__(self, pack: Pack, positions: Sequence[int]):
        self.pack, self.places = pack, list(positions)

    def __len__(self) -> int:
        return len(self.places)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.pack.square(place) for place in self.places[index]]
        return self.pack.square(self.places[index])
