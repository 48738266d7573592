"""verify: decode every downloaded image, normalise it, and say why each one left is rejected."""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from .files import atomic_path

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["id", "path", "label", "width", "height", "source"]
REJECTED_COLUMNS = ["id", "url", "label", "reason"]
FETCHED = ("ok", "duplicate")


@dataclass
class Settings:
    """The `verify` section of config.yaml; its schema gives the defaults."""

    max_size: int
    min_size: int
    max_pixels: int
    placeholder_urls: int


class Rejected(Exception):
    pass


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency laid on white, as a photo of the object would show it."""
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def normalise_image(source: Path, dest_dir: Path, image_id: str, settings: Settings) -> dict:
    """Decode `source` fully and write it as RGB, upright, longest side <= max_size.

    JPEGs are decoded at the smallest scale (1/2, 1/4, 1/8) that still covers the output size,
    which is most of verify's speed on photos. Raises Rejected with the reason.
    """
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > settings.max_pixels:
                raise Rejected(f"decompression bomb: {width}x{height} is over max_pixels")
            scale = min(1.0, settings.max_size / max(width, height))
            image.draft(None, (round(width * scale), round(height * scale)))
            image.load()
            kind = "jpg" if image.format == "JPEG" else "png"
            upright = ImageOps.exif_transpose(image)
            normal = to_rgb(upright)
    except Image.DecompressionBombError as error:
        raise Rejected(f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise Rejected("not an image Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise Rejected(f"cannot decode: {error}") from error
    normal.thumbnail((settings.max_size, settings.max_size), Image.Resampling.LANCZOS)
    if min(normal.size) < settings.min_size:
        raise Rejected(
            f"too small: {width}x{height}, {normal.width}x{normal.height} after shrinking "
            f"to max_size; min_size is {settings.min_size}"
        )
    dest = dest_dir / f"{image_id}.{kind}"
    with atomic_path(dest) as tmp:
        normal.save(tmp, format="JPEG" if kind == "jpg" else "PNG", quality=95)
    return {"path": str(dest), "width": normal.width, "height": normal.height}


def verify_downloads(
    downloads: dict[str, pd.DataFrame], dest_dir: str | Path, settings: Settings, threads: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn each class's download table into the manifest and the rejected table.

    Rejected, with a reason: URLs that gave no image; content that `placeholder_urls` or more
    URLs returned (a site's "image not available"); the same image in several classes (the
    label is unknowable, so neither is kept); files that fail to decode or are too small.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
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
    reasons = {}
    for image_id, image in images.iterrows():
        if settings.placeholder_urls and image.urls >= settings.placeholder_urls:
            reasons[image_id] = f"placeholder: the same content came from {image.urls} URLs"
        elif len(image.labels) > 1:
            reasons[image_id] = f"duplicate across classes: {', '.join(image.labels)}"
    rejected += [
        {"id": row.id, "url": row.url, "label": row.label, "reason": reasons[row.id]}
        for row in fetched.itertuples()
        if row.id in reasons
    ]
    candidates = [
        (image_id, image.labels[0], image.path, image.source)
        for image_id, image in images.iterrows()
        if image_id not in reasons
    ]

    def check(candidate):
        image_id, label, path, source = candidate
        try:
            return normalise_image(Path(path), dest_dir, image_id, settings)
        except Rejected as reason:
            return str(reason)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(
            tqdm(pool.map(check, candidates), total=len(candidates), unit="img", mininterval=2)
        )
    manifest = []
    for (image_id, label, _, source), result in zip(candidates, results, strict=True):
        if isinstance(result, str):
            rejected.append({"id": image_id, "url": source, "label": label, "reason": result})
        else:
            manifest.append({"id": image_id, "label": label, "source": source, **result})
    manifest = pd.DataFrame(manifest, columns=MANIFEST_COLUMNS).sort_values(["label", "id"])
    rejected = pd.DataFrame(rejected, columns=REJECTED_COLUMNS).sort_values(["label", "id", "url"])
    log.info("kept %d images, rejected %d", len(manifest), len(rejected))
    return manifest, rejected


def summarise(manifest: pd.DataFrame, rejected: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Per class: images kept, images rejected, and the rejections by kind of reason."""
    kinds = rejected["reason"].str.split(":").str[0].rename("reason")
    by_reason = pd.crosstab(rejected["label"], kinds).reindex(classes, fill_value=0).astype(int)
    return pd.DataFrame(
        {
            "class": classes,
            "kept": manifest["label"].value_counts().reindex(classes, fill_value=0).to_numpy(),
            "rejected": by_reason.sum(axis=1).astype(int).to_numpy(),
            **{reason: by_reason[reason].to_numpy() for reason in by_reason.columns},
        }
    )
