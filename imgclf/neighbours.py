"""neighbours: which images lie near which, in the feature space of `features.py`.

Plain numpy and pandas, so that the audit, which reads the features, need not import torch
(seconds of its start-up, after every labels edit), nor the features rule scikit-learn.
"""

import numpy as np
import pandas as pd

# Similarities computed at once: rows of the N x N matrix, as many as make this many values
# (128 MB of float32, 256 MB of the int64 indices that partitioning them gives). A fixed 1,024
# rows grew with N: at 100,000 images the features rule peaked at 3.8 GB.
BLOCK_VALUES = 2**25
CANDIDATES = 20  # an image's most similar others that may be its near-duplicates
Neighbours = tuple[np.ndarray, np.ndarray]  # per image: its nearest images and similarities


def similar_pairs(
    features: np.ndarray, similarity: float, nearest: Neighbours | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of images whose cosine similarity reaches `similarity`, among each
    image's CANDIDATES most similar others (`nearest`, when the caller has them): at most
    N x CANDIDATES pairs. All pairs over a threshold can be most of the N^2 (62 % of 10,000
    synthetic photos reach 0.7), while the copies of a photo are each other's nearest images;
    a photo with more copies than CANDIDATES still joins them all, through their own lists."""
    indices, similarities = nearest or nearest_neighbours(features, CANDIDATES)
    if similarities.shape[1] > CANDIDATES:
        best = np.argsort(-similarities, axis=1, kind="stable")[:, :CANDIDATES]
        indices = np.take_along_axis(indices, best, axis=1)
        similarities = np.take_along_axis(similarities, best, axis=1)
    first, column = np.nonzero(similarities >= similarity)
    second = indices[first, column]
    if not len(first):
        return first, second
    pairs = np.unique(np.stack([np.minimum(first, second), np.maximum(first, second)]), axis=1)
    return pairs[0].astype(int), pairs[1].astype(int)


def nearest_neighbours(
    features: np.ndarray,
    count: int,
    copies: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> Neighbours:
    """(indices, cosine similarities) of each image's `count` most similar other images, in no
    particular order. With `copies` (a code per image, -1 for none), images of one code are
    copies of one photo and are skipped as the image itself is: their -inf similarities fill
    rows that run out. With `rows`, only those images' neighbours (among all images)."""
    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    count = max(0, min(count, len(features) - 1))
    indices = np.zeros((len(rows), count), dtype=int)
    similarities = np.zeros((len(rows), count))
    if count < 1:
        return indices, similarities
    block_size = max(1, BLOCK_VALUES // len(features))
    for start in range(0, len(rows), block_size):
        block_rows = rows[start : start + block_size]
        block = features[block_rows] @ features.T
        block[np.arange(len(block)), block_rows] = -np.inf  # itself
        if copies is not None:
            own = copies[block_rows, None]
            block[(own == copies[None, :]) & (own >= 0)] = -np.inf
        nearest = np.argpartition(block, -count, axis=1)[:, -count:]
        indices[start : start + len(block)] = nearest
        similarities[start : start + len(block)] = np.take_along_axis(block, nearest, axis=1)
    return indices, similarities


def nearest_others(
    features: np.ndarray,
    count: int,
    copies: np.ndarray | None,
    nearest: Neighbours | None = None,
) -> Neighbours:
    """Each image's `count` most similar other images but its own copies (`copies` as
    nearest_neighbours takes it), from `nearest` when given (most similar first): each
    image's nearest found before, more than `count`, copies included, and -inf for an image
    not to count. Only an image left with fewer than `count` is searched again, so the N^2
    search runs once for the features rule's needs and the audit's; without `nearest`, the
    search of all pairs."""
    if nearest is None:
        return nearest_neighbours(features, count, copies)
    indices, similarities = nearest
    if copies is not None:
        own = copies[:, None]
        is_copy = (copies[indices] == own) & (own >= 0)
        similarities = np.where(is_copy, -np.inf, similarities)
    best = np.argsort(-similarities, axis=1, kind="stable")[:, :count]
    indices = np.take_along_axis(indices, best, axis=1)
    similarities = np.take_along_axis(similarities, best, axis=1)
    short = ~np.isfinite(similarities).all(axis=1)
    if short.any():
        rows = np.flatnonzero(short)
        indices[rows], similarities[rows] = nearest_neighbours(features, count, copies, rows)
    return indices, similarities


def neighbour_distances(
    features: np.ndarray,
    neighbours: int,
    copies: np.ndarray | None = None,
    nearest: Neighbours | None = None,
) -> np.ndarray:
    """Each image's mean cosine distance to its `neighbours` nearest other images, its own
    copies (`copies` as nearest_neighbours takes it) not counted: an off-topic photo that a
    web search returned twice is still far from everything else. 0 for an image with no
    other image to measure against. `nearest`: as nearest_others takes it."""
    _, similarities = nearest_others(features, neighbours, copies, nearest)
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
