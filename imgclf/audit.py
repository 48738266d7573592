"""audit: which images are likeliest to be wrong, found without trusting their labels.

Ranking by the final model's loss (fastai's top losses) misses most wrong labels of the
training set, which the model has learned. Here every image, train and valid, gets class
probabilities from evidence that never saw its label: logistic regressions fitted by K-fold
cross-validation on the pretrained body's features (`features.py`), averaged with a vote of
its nearest other images' labels. Confident learning
(Northcutt et al., 2021) then reads the probabilities against per-class thresholds;
near-duplicates and outliers come from the same features.
"""

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .neighbours import (
    Neighbours,
    copy_codes,
    duplicate_groups,
    nearest_others,
)

log = logging.getLogger(__name__)

# The issue column, in the order the review queue lists them.
LABEL, NEAR_DUPLICATE, OUTLIER, TOP_LOSS = "label", "near_duplicate", "outlier", "top_loss"
AUDIT_COLUMNS = [
    "id",
    "path",
    "label",
    "is_valid",
    "issue",
    "suggested",
    "confident",
    "given_probability",
    "margin",
    "duplicate_group",
    "outlier_score",
]


@dataclass
class AuditSettings:
    """The `audit` section of config.yaml."""

    image_size: int
    folds: int
    duplicate_similarity: float
    duplicate_pixels: float
    neighbours: int
    outlier_z: float


COMPONENTS = 64


def principal_components(features: np.ndarray, seed: int) -> np.ndarray:
    """The features' first COMPONENTS principal components. The labels play no part, so the
    probabilities stay out-of-fold. On the demo's digits the regressions take 3.6 s on 1280
    features and 0.7 s on 64 components, and find as many flipped labels (twice as many
    entries as flipped, ranked: 0.94 of 5 % flipped, 0.99 and 1.00 of 20 %; ants/bees 0.89
    and 0.97 either way)."""
    count = min(COMPONENTS, *features.shape)
    return PCA(n_components=count, random_state=seed).fit_transform(features)


def out_of_fold_probabilities(
    features: np.ndarray, targets: np.ndarray, classes: int, folds: int, seed: int
) -> np.ndarray:
    """Class probabilities (images x classes) of each image from a logistic regression fitted
    on the other folds. A class with fewer images than folds is missing from some folds'
    training data; its probability there is 0."""
    probabilities = np.zeros((len(targets), classes))
    splits = max(2, min(folds, np.bincount(targets, minlength=classes).max()))
    folding = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only n members": the case the docstring handles.
        warnings.simplefilter("ignore", UserWarning)
        for train, held_out in folding.split(features, targets):
            if len(np.unique(targets[train])) < 2:
                probabilities[held_out, targets[train][0]] = 1.0
                continue
            model = LogisticRegression(max_iter=2000, random_state=seed)
            model.fit(features[train], targets[train])
            probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(
                features[held_out]
            )
    return probabilities


VOTERS = 10  # neighbours whose labels vote on an image's class
VOTE_TEMPERATURE = 0.1  # a vote's weight grows e-fold for each 0.1 more cosine similarity


def neighbour_votes(
    features: np.ndarray,
    targets: np.ndarray,
    classes: int,
    copies: np.ndarray,
    nearest: Neighbours | None = None,
) -> np.ndarray:
    """Class probabilities of each image from the labels of its VOTERS most similar other
    images, weighted by exp(similarity / VOTE_TEMPERATURE); uniform when none can vote.
    Copies of the image (one code of `copies`, -1 for none) do not vote, as the image itself
    does not: a copy's label is the same evidence again, and a flipped copy would outvote a
    right twin.

    A second held-out estimate beside the regressions: a regression learns a class from the
    few images of it in the other folds, a vote reads the images next to this one. Their
    mean raised the share of 5 % flipped labels that the audit alone finds within twice as
    many entries (on average over seeds 10-39, none of those the vote's constants were
    chosen on; bench/audit_size.py) from 0.75 to 0.82 on the pets sample of 37 breeds x 10
    photos and from 0.92 to 0.95 on the digits, and left ants/bees at 0.91-0.92.
    `nearest`: as neighbours.nearest_others takes it."""
    neighbours, similarities = nearest_others(features, VOTERS, copies, nearest)
    weights = np.exp((similarities - 1) / VOTE_TEMPERATURE)  # -inf for a skipped copy: 0
    votes = np.zeros((len(targets), classes))
    np.add.at(votes, (np.arange(len(targets))[:, None], targets[neighbours]), weights)
    total = votes.sum(axis=1, keepdims=True)
    return np.divide(votes, total, out=np.full_like(votes, 1 / classes), where=total > 0)


def label_issues(probabilities: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
    """Per image: whether its label is suspect, the suggested label (an index), the given
    label's probability and the normalised margin.

    Confident learning counts an image as class j when p_j reaches t_j, the mean p_j over
    the images labelled j (each class's own confidence, so a class the model is unsure of
    still counts); of several such j, the likeliest. The images labelled i but counted as
    another class estimate how many of class i's labels are wrong; that many images labelled
    i are flagged, those of the lowest margin (p of the label minus the largest other p), as
    cleanlab's prune_by_class does. A flagged image's suggested label is its likeliest other
    class.
    """
    rows = np.arange(len(targets))
    classes = probabilities.shape[1]
    labelled = [targets == j for j in range(classes)]
    thresholds = np.array(
        [probabilities[mask, j].mean() if mask.any() else np.inf for j, mask in enumerate(labelled)]
    )
    confident = np.where(probabilities >= thresholds, probabilities, -1.0)
    counted_as = confident.argmax(axis=1)
    elsewhere = (confident.max(axis=1) >= 0) & (counted_as != targets)
    given = probabilities[rows, targets]
    others = probabilities.copy()
    others[rows, targets] = -np.inf
    margin = given - others.max(axis=1)
    is_issue = np.zeros(len(targets), dtype=bool)
    for mask in labelled:
        members = np.flatnonzero(mask)
        wrong = elsewhere[members].sum()
        is_issue[members[np.argsort(margin[members], kind="stable")[:wrong]]] = True
    return pd.DataFrame(
        {
            "is_issue": is_issue,
            "suggested": others.argmax(axis=1),
            "given_probability": given,
            "margin": margin,
        }
    )


def outlier_flags(distances: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each image's neighbour distance is an outlier: more than `threshold` robust
    standard deviations (1.4826 median absolute deviations) above the median."""
    median = np.median(distances) if len(distances) else 0.0
    spread = 1.4826 * np.median(np.abs(distances - median)) if len(distances) else 0.0
    if spread == 0:
        return np.zeros(len(distances), dtype=bool)
    return (distances - median) / spread > threshold


def conflicting_groups(split: pd.DataFrame, groups: pd.DataFrame) -> pd.Series:
    """Per image of the split, its near-duplicate group when that group holds more than one
    label (the same photo under two classes: one of them is wrong), else ''."""
    group = duplicate_groups(split["id"], groups)
    labels_per_group = split[group != ""].groupby(group[group != ""])["label"].nunique()
    conflicting = set(labels_per_group[labels_per_group > 1].index)
    return group.where(group.isin(conflicting), "")


def group_classes(duplicate_group: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per image of a conflicting near-duplicate group, the class its members' held-out
    probabilities add up to most (copies of one photo share one true class, so their
    evidence pools); -1 for the others. A member labelled otherwise is the likely wrong one:
    flagging only it, not its correctly labelled twin, raised the share of 5 % flipped
    ants/bees labels within twice as many entries from 0.65 to 0.80."""
    classes = np.full(len(duplicate_group), -1)
    for group in np.unique(duplicate_group[duplicate_group != ""]):
        members = duplicate_group == group
        classes[members] = probabilities[members].sum(axis=0).argmax()
    return classes


def audit(
    split: pd.DataFrame,
    ids: np.ndarray,
    features: np.ndarray,
    distances: np.ndarray,
    groups: pd.DataFrame,
    classes: list[str],
    settings: AuditSettings,
    seed: int,
    nearest: Neighbours | None = None,
) -> pd.DataFrame:
    """Every image of the split with its issue ('' when none), suggested label and scores,
    the likeliest problems first: labels that confident learning counts as another class (by
    margin), near-duplicates labelled otherwise than their group's likeliest class (by group),
    outliers (farthest first), other labels whose held-out prediction is another class (by
    margin), then the rest. `nearest`: each image's nearest images as the features rule
    found them (rows and indices of `ids`), so that the votes need no second search of all
    pairs: at 100,000 images it took 200 of the rule's 249 s."""
    position = {image_id: index for index, image_id in enumerate(ids)}
    missing = [image_id for image_id in split["id"] if image_id not in position]
    if missing:
        raise ValueError(f"{len(missing)} image(s) of the split have no features: {missing[:5]}")
    rows = split["id"].map(position).to_numpy()
    index = {label: number for number, label in enumerate(classes)}
    targets = split["label"].map(index).to_numpy()
    regressions = out_of_fold_probabilities(
        principal_components(features[rows], seed), targets, len(classes), settings.folds, seed
    )
    if nearest is not None:
        # As positions in the split; an image the split does not hold (a dropped label) has
        # no vote to give.
        in_split = np.full(len(ids), -1)
        in_split[rows] = np.arange(len(rows))
        indices = in_split[nearest[0][rows]]
        nearest = (indices, np.where(indices >= 0, nearest[1][rows], -np.inf))
    copies = copy_codes(split["id"], groups)
    votes = neighbour_votes(features[rows], targets, len(classes), copies, nearest)
    probabilities = (regressions + votes) / 2
    found = label_issues(probabilities, targets)
    duplicate_group = conflicting_groups(split, groups).to_numpy()
    group_class = group_classes(duplicate_group, probabilities)
    dissenting = (group_class >= 0) & (group_class != targets)
    scores = distances[rows]
    outlier = outlier_flags(scores, settings.outlier_z)
    # Confident learning can count no image of a small or spread-out class as another class;
    # one whose held-out prediction is another class is still doubted, after the surer finds.
    confident = found["is_issue"].to_numpy()
    doubted = found["margin"].to_numpy() < 0
    conditions = [confident, dissenting, outlier, doubted]
    issue = np.select(conditions, [LABEL, NEAR_DUPLICATE, OUTLIER, LABEL], "")
    # A copy's suggestion is its group's class: the pooled evidence of every copy.
    suggested = np.select([dissenting, issue == LABEL], [group_class, found["suggested"]], -1)
    table = split.assign(
        issue=issue,
        suggested=[classes[number] if number >= 0 else "" for number in suggested],
        confident=confident,
        given_probability=found["given_probability"].to_numpy(),
        margin=found["margin"].to_numpy(),
        duplicate_group=duplicate_group,
        outlier_score=scores,
    )
    # Within a section: labels by margin, duplicates side by side, outliers farthest first.
    within = np.select([issue == LABEL, issue == OUTLIER], [table["margin"], -scores], 0.0)
    table = table.assign(priority=np.select(conditions, [0, 1, 2, 3], 4), within=within)
    table = table.sort_values(["priority", "within", "duplicate_group", "margin", "id"])
    for name in (LABEL, NEAR_DUPLICATE, OUTLIER):
        log.info("%s: %d images", name, (table["issue"] == name).sum())
    return table[AUDIT_COLUMNS].reset_index(drop=True)
