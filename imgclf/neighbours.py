"""neighbours: which images lie near which, in the feature space of `features.py`.

Plain numpy and pandas, so that the audit, which reads the features, need not import torch
(seconds of its start-up, after every labels edit), nor the features rule scikit-learn.
"""

from collections.abc import Iterator

import numpy as np
import pandas as pd

CHUNK = 1024  # rows of the similarity matrix at once: 1024 x N floats
CANDIDATES = 20  # an image's most similar others that may be its near-duplicates


def similarity_blocks(features: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, cosine similarities of CHUNK images with every image), block by block, so
    that a large set never holds the whole N x N matrix."""
    for start in range(0, len(features), CHUNK):
        yield start, features[start : start + CHUNK] @ features.T


def similar_pairs(
    features: np.ndarray, similarity: float, per_image: int = CANDIDATES
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of images whose cosine similarity reaches `similarity`, among each
    image's `per_image` most similar others: at most N x per_image pairs. All pairs over a
    threshold can be most of the N^2 (62 % of 10,000 synthetic photos reach 0.7), while the
    copies of a photo are each other's nearest images; a photo with more copies than
    `per_image` still joins them all, through the copies' own lists."""
    rows, columns = [], []
    count = min(per_image, len(features) - 1)
    if count < 1:
        return np.zeros(0, int), np.zeros(0, int)
    for start, block in similarity_blocks(features):
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # itself
        nearest = np.argpartition(-block, count - 1, axis=1)[:, :count]
        close = np.take_along_axis(block, nearest, axis=1) >= similarity
        i, j = np.nonzero(close)
        rows.append(i + start)
        columns.append(nearest[i, j])
    first, second = np.concatenate(rows), np.concatenate(columns)
    pairs = np.unique(np.stack([np.minimum(first, second), np.maximum(first, second)]), axis=1)
    return pairs[0].astype(int), pairs[1].astype(int)


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


def neighbour_distances(
    features: np.ndarray, neighbours: int, copies: np.ndarray | None = None
) -> np.ndarray:
    """Each image's mean cosine distance to its `neighbours` nearest other images, its own
    copies (`copies` as nearest_neighbours takes it) not counted: an off-topic photo that a
    web search returned twice is still far from everything else. 0 for an image with no
    other image to measure against."""
    _, similarities = nearest_neighbours(features, neighbours, copies)
    counted = np.isfinite(similarities)
    total = np.where(counted, similarities, 0.0).sum(axis=1)
    mean = np.divide(total, counted.sum(axis=1), out=np.ones(len(features)), where=counted.any(1))
    return 1 - mean


def duplicate_groups(ids: pd.Series, groups: pd.DataFrame) -> pd.Series:
    """Per image, its near-duplicate group, else ''."""
    return ids.map(dict(zip(groups["id"], groups["group"], strict=True))).fillna("")


def copy_codes(ids: pd.Series, groups: pd.DataFrame) -> np.ndarray:
    """Per image, a number shared by the copies of one photo (its near-duplicate group), -1
    for an image without a copy: `copies` of neighbours.nearest_neighbours."""
    return pd.factorize(duplicate_groups(ids, groups).replace("", None))[0]
