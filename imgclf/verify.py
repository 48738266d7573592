"""verify: decode every downloaded image, normalise it, and say why each one left is rejected."""

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .files import atomic_path, remove_partial_files, sync_folder
from .preprocess import as_srgb

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["id", "path", "label", "width", "height", "source"]
REJECTED_COLUMNS = ["id", "url", "label", "reason"]
FETCHED = ("ok", "duplicate")
SKIPPED = "skipped"  # download's status for a URL past its class's max_images
# Bytes that decoding and converting one pixel can hold at its peak: an RGBA image is decoded
# (4), turned upright (4), laid on white (4 + 4) and made RGB (3); a 16-bit one passes through
# float32. Measured: a 7000 x 7000 RGBA PNG peaked at 1 GB, about 20 bytes a pixel; eight
# 4000 x 4000 ones on eight threads grew the process by 2.2 GB, 17 bytes a pixel each.
PEAK_BYTES_PER_PIXEL = 20
# The memory that verify's rule declares and the images may not have: Python, pandas, tables.
BASELINE_MB = 1000
# A placeholder card ("image not available") has a handful of flat colours; of 766 real photos
# (pets370 and ants/bees, 200 px, 16 levels a channel) none had fewer than 15 colours that
# cover 0.1 % of the image each.
CARD_COLOURS = 8


@dataclass
class VerifySettings:
    """The `verify` section of config.yaml; its schema gives the defaults."""

    max_size: int
    min_size: int
    max_pixels: int
    placeholder_urls: int


class ImageRejected(Exception):
    pass


class MemoryBudget:
    """Bytes that verify's threads may hold in decoded pixels at once, so the rule stays
    within the memory it declares whatever the images: a 190 KB PNG can decode to 200 MB."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.changed = threading.Condition()

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        amount = min(amount, self.limit)  # an image over the whole budget waits to run alone
        with self.changed:
            self.changed.wait_for(lambda: self.used + amount <= self.limit)
            self.used += amount
        try:
            yield
        finally:
            with self.changed:
                self.used -= amount
                self.changed.notify_all()


def unlimited() -> MemoryBudget:
    return MemoryBudget(2**62)


def is_card(image: Image.Image) -> bool:
    """Whether an RGB image is a flat card of a few colours rather than a picture."""
    levels = np.asarray(image.resize((100, 100))) // 16
    codes = (levels[..., 0].astype(np.int32) * 256 + levels[..., 1] * 16 + levels[..., 2]).ravel()
    return int((np.bincount(codes) >= codes.size * 0.001).sum()) < CARD_COLOURS


def normalise_image(
    source: Path,
    dest_dir: Path,
    image_id: str,
    settings: VerifySettings,
    budget: MemoryBudget | None = None,
    repeated: int = 0,
) -> dict:
    """Decode `source` fully and write it as 8-bit sRGB RGB, upright, longest side <= max_size.

    JPEGs are decoded at the smallest scale (1/2, 1/4, 1/8) that still covers the output size,
    which is most of verify's speed on photos. Content that `repeated` URLs returned is a
    placeholder when it is a flat card. Raises ImageRejected with the reason.
    """
    budget = budget or unlimited()
    try:
        # The budget is given back after the image is closed, not before: a thread that stops
        # between the two would otherwise hold its decoded pixels beside the next image's.
        with ExitStack() as decoding, Image.open(source) as image:
            width, height = image.size
            if width * height > settings.max_pixels:
                raise ImageRejected(f"decompression bomb: {width}x{height} is over max_pixels")
            scale = min(1.0, settings.max_size / max(width, height))
            image.draft(None, (round(width * scale), round(height * scale)))
            decoding.enter_context(budget.hold(image.width * image.height * PEAK_BYTES_PER_PIXEL))
            image.load()
            kind = "jpg" if image.format == "JPEG" else "png"
            normal = as_srgb(image)
            normal.thumbnail((settings.max_size, settings.max_size), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageRejected("not an image Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"cannot decode: {error}") from error
    if repeated and is_card(normal):
        raise ImageRejected(f"placeholder: a flat card that {repeated} URLs returned")
    if min(normal.size) < settings.min_size:
        raise ImageRejected(
            f"too small: {width}x{height}, {normal.width}x{normal.height} after shrinking "
            f"to max_size; min_size is {settings.min_size}"
        )
    dest = dest_dir / f"{image_id}.{kind}"
    with atomic_path(dest, durable=False) as tmp:  # verify_downloads cleans and syncs once
        normal.save(tmp, format="JPEG" if kind == "jpg" else "PNG", quality=95)
    return {"path": str(dest), "width": normal.width, "height": normal.height}


def verify_downloads(
    downloads: dict[str, pd.DataFrame],
    dest_dir: str | Path,
    settings: VerifySettings,
    threads: int = 1,
    memory_mb: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn each class's download table into the manifest and the rejected table.

    Rejected, with a reason: URLs that gave no image; placeholders (a site's "image not
    available"): content that `placeholder_urls` or more URLs returned across classes, or
    that many URLs of one class returned as a flat card; the same image in several classes
    (the label is unknowable, so neither is kept); files that fail to decode or are too small.
    A photo saved under several names of one class is kept once, as the download's duplicate.
    With `memory_mb`, the images decoded at once stay within it.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_files(dest_dir)
    rows = pd.concat(
        [table.assign(label=label) for label, table in downloads.items()], ignore_index=True
    )
    fetched = rows[rows["status"].isin(FETCHED)]
    failed = rows[~rows["status"].isin(FETCHED)]
    rejected = [
        {"id": "", "url": row.url, "label": row.label, "reason": f"{row.status}: {row.error}"}
        for row in failed.itertuples()
    ]

    images = fetched.groupby("id").agg(
        labels=("label", lambda labels: sorted(set(labels))),
        urls=("url", "nunique"),
        source=("url", "first"),
        path=("path", "first"),
    )
    repeated = (images["urls"] >= settings.placeholder_urls) & bool(settings.placeholder_urls)
    reasons = {}
    for image_id, image in images[images["labels"].str.len() > 1].iterrows():
        classes = ", ".join(image.labels)
        if repeated[image_id]:
            reasons[image_id] = f"placeholder: {image.urls} URLs of {classes} returned it"
        else:
            reasons[image_id] = f"duplicate across classes: {classes}"
    rejected += [
        {"id": row.id, "url": row.url, "label": row.label, "reason": reasons[row.id]}
        for row in fetched.itertuples()
        if row.id in reasons
    ]
    candidates = [
        (image_id, image.labels[0], image.path, image.source, image.urls * repeated[image_id])
        for image_id, image in images.iterrows()
        if image_id not in reasons
    ]
    budget = MemoryBudget(max(memory_mb - BASELINE_MB, 1) * 2**20) if memory_mb else unlimited()

    def check(candidate):
        image_id, _, path, _, urls = candidate
        try:
            return normalise_image(Path(path), dest_dir, image_id, settings, budget, urls)
        except ImageRejected as reason:
            return str(reason)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(
            tqdm(pool.map(check, candidates), total=len(candidates), unit="img", mininterval=2)
        )
    sync_folder(dest_dir)
    manifest = []
    for (image_id, label, _, source, _), result in zip(candidates, results, strict=True):
        if isinstance(result, str):
            rejected.append({"id": image_id, "url": source, "label": label, "reason": result})
        else:
            manifest.append({"id": image_id, "label": label, "source": source, **result})
    manifest = pd.DataFrame(manifest, columns=MANIFEST_COLUMNS).sort_values(["label", "id"])
    rejected = pd.DataFrame(rejected, columns=REJECTED_COLUMNS).sort_values(["label", "id", "url"])
    log.info("kept %d images, rejected %d", len(manifest), len(rejected))
    return manifest, rejected


def summarise(manifest: pd.DataFrame, rejected: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Per class: images kept, images rejected, and the rejections by kind of reason; always
    `skipped` (URLs past the class's max_images), so that a cap is seen even when it took
    nothing, and logged where it did."""
    kinds = rejected["reason"].str.split(":").str[0].rename("reason")
    by_reason = pd.crosstab(rejected["label"], kinds).reindex(classes, fill_value=0).astype(int)
    if SKIPPED not in by_reason:
        by_reason.insert(0, SKIPPED, 0)
    for label, count in by_reason[SKIPPED][by_reason[SKIPPED] > 0].items():
        log.warning(
            "class %s: %d images left out by its max_images (results/download/%s.csv lists them)",
            label,
            count,
            label,
        )
    return pd.DataFrame(
        {
            "class": classes,
            "kept": manifest["label"].value_counts().reindex(classes, fill_value=0).to_numpy(),
            "rejected": by_reason.sum(axis=1).astype(int).to_numpy(),
            **{reason: by_reason[reason].to_numpy() for reason in by_reason.columns},
        }
    )
