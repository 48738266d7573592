"""features: what the pretrained body sees in each verified image, computed once.

The audit and the near-duplicate grouping need no training: the body's pooled features of
an ImageNet model already place the same photo, resized or re-encoded, next to itself, and
an off-topic photo far from the rest. They depend on the images only, not on their labels,
so a labels edit does not recompute them.
"""

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn
from tqdm import tqdm

from .data import load_images, prepare_file
from .models import build_model, folded_for_inference
from .neighbours import Neighbours, similar_pairs
from .train import forward_batches

log = logging.getLogger(__name__)

THUMBNAIL = 16  # pixels a side
CHUNK = 512  # images decoded at once
PAIRS_AT_ONCE = 65536  # candidate pairs whose thumbnails are compared at once


def image_features(
    paths: list[str], arch: str, size: int, batch_size: int, threads: int, device: torch.device
) -> np.ndarray:
    """The pretrained body's average-pooled features of each image (as the validation images
    are prepared), scaled to length 1 so that a dot product is a cosine similarity."""
    model = build_model(arch, n_classes=2, pretrained=True)
    pooled_body = nn.Sequential(model.body, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    pooled_body = folded_for_inference(pooled_body)
    started = time.perf_counter()
    prepare = functools.partial(prepare_file, size=size)
    # Decoded a chunk at a time: held whole at 224 px, the images grew this job by 150 KB each
    # (4.8 GB at 25k). Not from the pack: it holds the training size, and a pack at the
    # features' size would be written and read once, by this job alone.
    parts = []
    for start in tqdm(range(0, len(paths), CHUNK), unit="chunk", mininterval=5):
        images = load_images(paths[start : start + CHUNK], prepare, threads)
        parts.append(forward_batches(pooled_body, images, batch_size, device).float())
    features = torch.cat(parts) if parts else torch.zeros(0, 0)
    log.info("features of %d images in %.1f s", len(paths), time.perf_counter() - started)
    return torch.nn.functional.normalize(features, dim=1).numpy()


def thumbnail(path: str, side: int = THUMBNAIL) -> np.ndarray:
    """The image as a side x side grey square, centred and scaled to length 1: the pixels
    that a resized or re-encoded copy keeps."""
    with Image.open(path) as image:
        square = ImageOps.fit(image.convert("L"), (side, side), Image.Resampling.BOX)
    pixels = np.asarray(square, dtype=np.float64).ravel()
    pixels -= pixels.mean()
    norm = np.linalg.norm(pixels)
    return pixels / norm if norm else pixels


def near_duplicate_groups(
    ids: list[str],
    paths: list[str],
    features: np.ndarray,
    similarity: float,
    pixel_similarity: float,
    threads: int = 1,
    nearest: Neighbours | None = None,
) -> pd.DataFrame:
    """id, group: the images that have a near-duplicate, joined transitively (a photo and its
    two resized copies are one group); a group is named by its smallest id.

    Two images are near-duplicates when both their features and their thumbnails agree. The
    features alone join different photos of simple things: on the demo's digits, 10,915
    pairs of different images reach a similarity of 0.9, and 6 of them have thumbnails that
    correlate at 0.99, against at least 0.999 for a resized, re-encoded copy of a photo.
    `nearest`: each image's nearest images, when the caller has searched them already.
    """
    started = time.perf_counter()
    first, second = similar_pairs(features, similarity, nearest)
    candidates = np.union1d(first, second)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pixels = np.zeros((len(features), THUMBNAIL**2), dtype=np.float32)
        squares = pool.map(thumbnail, [paths[index] for index in candidates])
        for index, square in zip(candidates, squares, strict=True):
            pixels[index] = square
    agree = np.zeros(len(first), dtype=bool)
    for start in range(0, len(first), PAIRS_AT_ONCE):
        pairs = slice(start, start + PAIRS_AT_ONCE)
        correlation = np.einsum("ij,ij->i", pixels[first[pairs]], pixels[second[pairs]])
        agree[pairs] = correlation >= pixel_similarity
    first, second = first[agree], second[agree]
    count = len(ids)
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    table = pd.DataFrame({"id": ids, "component": component})
    sizes = table["component"].map(table["component"].value_counts())
    grouped = table[sizes > 1]
    names = grouped.groupby("component")["id"].transform("min")
    log.info(
        "%d images in %d near-duplicate groups (features >= %g, thumbnails >= %g), %.1f s",
        len(grouped),
        grouped["component"].nunique(),
        similarity,
        pixel_similarity,
        time.perf_counter() - started,
    )
    return pd.DataFrame({"id": grouped["id"], "group": names}).sort_values(
        ["group", "id"], ignore_index=True
    )
