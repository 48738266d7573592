"""features: what the pretrained body sees in each verified image, computed once.

The audit and the near-duplicate grouping need no training: the body's pooled features of
an ImageNet model already place the same photo, resized or re-encoded, next to itself, and
an off-topic photo far from the rest. They depend on the images only, not on their labels,
so a labels edit does not recompute them.
"""

import functools
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from .data import load_images, prepare_file
from .models import build_model
from .train import forward_batches

log = logging.getLogger(__name__)

CHUNK = 1024  # rows of the similarity matrix at once: 1024 x N floats
THUMBNAIL = 16  # pixels a side


def image_features(
    paths: list[str], arch: str, size: int, batch_size: int, threads: int, device: torch.device
) -> np.ndarray:
    """The pretrained body's average-pooled features of each image (as the validation images
    are prepared), scaled to length 1 so that a dot product is a cosine similarity."""
    model = build_model(arch, n_classes=2, pretrained=True)
    pooled_body = nn.Sequential(model.body, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = load_images(paths, functools.partial(prepare_file, size=size), threads)
    features = forward_batches(pooled_body, images, batch_size, device).float()
    return torch.nn.functional.normalize(features, dim=1).numpy()


def similarity_blocks(features: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, cosine similarities of CHUNK images with every image), block by block, so
    that a large set never holds the whole N x N matrix."""
    for start in range(0, len(features), CHUNK):
        yield start, features[start : start + CHUNK] @ features.T


def similar_pairs(features: np.ndarray, similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of images whose cosine similarity reaches `similarity`."""
    rows, columns = [], []
    for start, block in similarity_blocks(features):
        i, j = np.nonzero(block >= similarity)
        i += start
        keep = i < j
        rows.append(i[keep])
        columns.append(j[keep])
    return np.concatenate(rows or [[]]).astype(int), np.concatenate(columns or [[]]).astype(int)


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
) -> pd.DataFrame:
    """id, group: the images that have a near-duplicate, joined transitively (a photo and its
    two resized copies are one group); a group is named by its smallest id.

    Two images are near-duplicates when both their features and their thumbnails agree. The
    features alone join different photos of simple things: on the demo's digits, 10,915
    pairs of different images reach a similarity of 0.9, and 6 of them have thumbnails that
    correlate at 0.99, against at least 0.999 for a resized, re-encoded copy of a photo.
    """
    first, second = similar_pairs(features, similarity)
    thumbnails = {index: thumbnail(paths[index]) for index in np.union1d(first, second)}
    pairs = zip(first, second, strict=True)
    agree = np.array([thumbnails[i] @ thumbnails[j] >= pixel_similarity for i, j in pairs], bool)
    first, second = first[agree], second[agree]
    count = len(ids)
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    table = pd.DataFrame({"id": ids, "component": component})
    sizes = table["component"].map(table["component"].value_counts())
    grouped = table[sizes > 1]
    names = grouped.groupby("component")["id"].transform("min")
    log.info(
        "%d images in %d near-duplicate groups (features >= %g, thumbnails >= %g)",
        len(grouped),
        grouped["component"].nunique(),
        similarity,
        pixel_similarity,
    )
    return pd.DataFrame({"id": grouped["id"], "group": names}).sort_values(
        ["group", "id"], ignore_index=True
    )


def nearest_neighbours(
    features: np.ndarray, count: int, copies: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine similarities) of each image's `count` most similar other images. With
    `copies` (a code per image, -1 for none), images of one code are copies of one photo and
    are skipped as the image itself is: their -inf similarities fill rows that run out."""
    count = max(0, min(count, len(features) - 1))
    indices = np.zeros((len(features), count), dtype=int)
    similarities = np.zeros((len(features), count))
    if count < 1:
        return indices, similarities
    for start, block in similarity_blocks(features):
        rows = np.arange(start, start + len(block))
        block[np.arange(len(block)), rows] = -np.inf  # itself
        if copies is not None:
            own = copies[rows, None]
            block[(own == copies[None, :]) & (own >= 0)] = -np.inf
        nearest = np.argpartition(-block, count - 1, axis=1)[:, :count]
        indices[rows] = nearest
        similarities[rows] = np.take_along_axis(block, nearest, axis=1)
    return indices, similarities


def neighbour_distances(features: np.ndarray, neighbours: int) -> np.ndarray:
    """Each image's mean cosine distance to its `neighbours` nearest other images."""
    _, similarities = nearest_neighbours(features, neighbours)
    if similarities.shape[1] == 0:
        return np.zeros(len(features))
    return 1 - similarities.mean(axis=1)
