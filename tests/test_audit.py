"""Units of the audit: confident learning, near-duplicates, outliers."""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from imgclf.audit import (
    AUDIT_COLUMNS,
    AuditSettings,
    audit,
    label_issues,
    neighbour_votes,
    out_of_fold_probabilities,
    outlier_flags,
)
from imgclf.features import image_features, near_duplicate_groups
from imgclf.files import read_csv
from imgclf.neighbours import nearest_neighbours, neighbour_distances

from . import images
from .tiny_pipeline import tiny_config, write_photos
from .workflow import snakemake, write_config

SETTINGS = AuditSettings(
    image_size=None,
    folds=5,
    duplicate_similarity=0.9,
    duplicate_pixels=0.99,
    neighbours=5,
    outlier_z=4,
)


def clusters(per_class=40, classes=3, dims=16, spread=0.35, seed=0):
    """Features of `classes` well-separated clusters, unit length, and their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims))
    truth = np.repeat(np.arange(classes), per_class)
    features = centres[truth] + spread * rng.normal(size=(len(truth), dims))
    return features / np.linalg.norm(features, axis=1, keepdims=True), truth


def flip(truth, count, classes, seed=0):
    """Labels with `count` of them moved to the next class; the moved positions."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(truth), count, replace=False)
    labels = truth.copy()
    labels[flipped] = (labels[flipped] + 1) % classes
    return labels, flipped


def test_confident_learning_counts_an_image_as_the_class_whose_own_threshold_it_reaches():
    probabilities = np.array(
        [
            [0.9, 0.1],
            [0.7, 0.3],  # below both thresholds: counted as no class
            [0.2, 0.8],
            [0.4, 0.6],  # 0.6 reaches class 1's 0.45
            [0.75, 0.25],  # likelier class 0, but short of its threshold: no issue
            [0.85, 0.15],  # reaches class 0's 0.8: labelled 1, counted as 0
        ]
    )
    targets = np.array([0, 0, 1, 1, 1, 1])
    # Thresholds: the mean p0 of the images labelled 0 is 0.8; the mean p1 of those labelled
    # 1 is (0.8 + 0.6 + 0.25 + 0.15) / 4 = 0.45.
    found = label_issues(probabilities, targets)
    assert found["is_issue"].tolist() == [False, False, False, False, False, True]
    assert found.at[5, "suggested"] == 0
    assert found["margin"].to_numpy() == pytest.approx([0.8, 0.4, 0.6, 0.2, -0.5, -0.7])


def test_out_of_fold_probabilities_find_flipped_labels_that_a_fitted_model_would_learn():
    features, truth = clusters()
    labels, flipped = flip(truth, 12, classes=3)
    probabilities = out_of_fold_probabilities(features, labels, 3, folds=5, seed=0)
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(len(labels)))
    found = label_issues(probabilities, labels)
    issues = set(np.flatnonzero(found["is_issue"]))
    assert set(flipped) <= issues and len(issues) <= 2 * len(flipped)
    assert (found.loc[flipped, "suggested"].to_numpy() == truth[flipped]).all()
    ranked = found.sort_values("margin").index[: 2 * len(flipped)]
    assert set(flipped) <= set(ranked)


def test_a_class_smaller_than_the_folds_still_gets_probabilities():
    features, truth = clusters(per_class=8, classes=2)
    features = np.vstack([features, features[:2] + 0.01])
    labels = np.concatenate([truth, [2, 2]])  # a third class of two images
    probabilities = out_of_fold_probabilities(features, labels, 3, folds=5, seed=0)
    assert probabilities.shape == (18, 3) and np.isfinite(probabilities).all()
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(18))


def test_neighbours_vote_an_image_back_to_the_class_it_lies_in():
    features, truth = clusters()
    labels, flipped = flip(truth, 12, classes=3)
    votes = neighbour_votes(features, labels, 3, copies=np.full(len(labels), -1))
    assert votes.sum(axis=1) == pytest.approx(np.ones(len(labels)))
    assert (votes[flipped].argmax(axis=1) == truth[flipped]).all()
    assert (votes[flipped, labels[flipped]] < 0.5).all()


def test_a_copy_does_not_vote_for_its_twin_and_an_image_alone_gets_no_vote():
    features = np.repeat(np.eye(3), 4, axis=0)  # three tight clusters of four
    features[0] = features[4]  # image 0, labelled 0, is a copy of image 4 (class 1)
    labels = np.repeat([0, 1, 2], 4)
    alone = neighbour_votes(features, labels, 3, copies=np.full(12, -1))
    # Images of other clusters vote too, at a weight of e^-10 each.
    assert alone[4] == pytest.approx([0.25, 0.75, 0], abs=1e-3)  # the copy's label counts
    copies = np.full(12, -1)
    copies[[0, 4]] = 0
    votes = neighbour_votes(features, labels, 3, copies)
    assert votes[4] == pytest.approx([0, 1, 0], abs=1e-3)
    assert votes[0] == pytest.approx([0, 1, 0], abs=1e-3)
    assert neighbour_votes(features[:1], labels[:1], 3, copies[:1])[0] == pytest.approx([1 / 3] * 3)


def test_outliers_are_far_above_the_typical_distance_and_a_uniform_set_has_none():
    distances = np.array([0.20, 0.21, 0.19, 0.22, 0.20, 0.18, 0.21, 0.60])
    assert outlier_flags(distances, 4).tolist() == [False] * 7 + [True]
    assert not outlier_flags(np.full(5, 0.3), 4).any()


def smooth_photo(seed: int, path) -> str:
    """A photo-like image: a few random colours blended smoothly over 96 x 72 pixels."""
    colours = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    image = Image.fromarray(colours).resize((96, 72), Image.Resampling.BICUBIC)
    image.save(path)
    return str(path)


def test_a_resized_reencoded_copy_is_a_near_duplicate_and_other_photos_are_not(tmp_path):
    photos = [smooth_photo(seed, tmp_path / f"{seed}.png") for seed in range(6)]
    with Image.open(photos[0]) as original:
        original.resize((60, 45), Image.Resampling.BILINEAR).save(tmp_path / "copy.jpg", quality=70)
    photos.append(str(tmp_path / "copy.jpg"))
    ids = [f"{index:016x}" for index in range(len(photos))]
    features = image_features(photos, "efficientnet_lite0", 64, 4, 1, torch.device("cpu"))
    assert np.linalg.norm(features, axis=1) == pytest.approx(np.ones(len(photos)))
    groups = near_duplicate_groups(ids, photos, features, 0.9, 0.99)
    assert groups.values.tolist() == [[ids[0], ids[0]], [ids[6], ids[0]]]


def test_the_nearest_neighbour_distance_is_to_other_images():
    features = np.eye(4)[[0, 0, 1, 2]].astype(float)
    assert neighbour_distances(features, 1).tolist() == [0.0, 0.0, 1.0, 1.0]


def test_an_off_topic_photo_found_twice_is_still_far_from_everything():
    rng = np.random.default_rng(0)
    photos = np.eye(3)[[0] * 8] + rng.normal(0, 0.05, (8, 3))
    features = np.vstack([photos, np.eye(3)[[2, 2]]])  # an off-topic photo and its copy
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    copies = np.array([-1] * 8 + [0, 0])
    assert neighbour_distances(features, 1)[8:].tolist() == [0.0, 0.0]  # each other's nearest
    distances = neighbour_distances(features, 1, copies)
    assert distances[8:] == pytest.approx([1.0, 1.0], abs=0.1)
    assert outlier_flags(distances, 4).tolist() == [False] * 8 + [True, True]
    # With no image but its copy to measure against, a photo is at no distance.
    assert neighbour_distances(features[8:], 1, copies[8:]).tolist() == [0.0, 0.0]


def test_the_audit_lists_wrong_labels_first_then_conflicting_duplicates_then_outliers():
    features, truth = clusters(per_class=30)
    features[-1] = -features[:-1].mean(axis=0)  # far from everything: an outlier
    features[-1] /= np.linalg.norm(features[-1])
    labels, flipped = flip(truth[:-1], 6, classes=3, seed=1)
    labels = np.append(labels, truth[-1])
    classes = ["ant", "bee", "wasp"]
    ids = np.array([f"{index:016x}" for index in range(len(labels))])
    split = pd.DataFrame(
        {
            "id": ids,
            "path": [f"{image_id}.png" for image_id in ids],
            "label": [classes[label] for label in labels],
            "is_valid": np.arange(len(labels)) % 5 == 0,
        }
    )
    # Two images of one group under different labels.
    pair = [index for index in range(len(labels)) if index not in flipped][:2]
    split.loc[pair[1], "label"] = classes[(labels[pair[0]] + 1) % 3]
    groups = pd.DataFrame({"id": ids[pair], "group": ids[pair[0]]})
    distances = neighbour_distances(features, 5)
    table = audit(split, ids, features, distances, groups, classes, SETTINGS, seed=0)
    assert list(table.columns) == AUDIT_COLUMNS and len(table) == len(split)
    runs = [issue for issue, _ in itertools.groupby(table["issue"])]
    # Sure labels, duplicates, outliers, doubted labels, the rest: the runs follow this order
    # (`in` on an iterator consumes it, so this checks for a subsequence).
    sections = iter(["label", "near_duplicate", "outlier", "label", ""])
    assert all(run in sections for run in runs), runs
    labelled = table[table["issue"] == "label"]
    assert set(ids[flipped]) <= set(labelled["id"])
    assert (labelled["margin"] < 0).all()
    assert (labelled["suggested"] != labelled["label"]).all()
    by_id = table.set_index("id")
    assert set(by_id.loc[ids[pair], "duplicate_group"]) == {ids[pair[0]]}
    # The copy labelled against the pair's pooled evidence is flagged (as a wrong label when
    # confident learning finds it too), suggested its twin's label; the twin is not flagged.
    assert by_id.at[ids[pair[1]], "issue"] in {"label", "near_duplicate"}
    assert by_id.at[ids[pair[1]], "suggested"] == classes[labels[pair[0]]]
    assert by_id.at[ids[pair[0]], "issue"] == ""
    assert by_id.at[ids[-1], "issue"] == "outlier"
    assert (table.loc[~table["issue"].isin(["label", "near_duplicate"]), "suggested"] == "").all()


def test_the_audit_from_the_features_rules_nearest_images_is_the_audit_of_its_own_search():
    """The votes reuse the features rule's search of all pairs, made before labels dropped any
    image: a dropped neighbour or a copy gives no vote, and an image left with too few
    neighbours is searched again, so the audit is the one its own search gives."""
    features, truth = clusters(per_class=30)
    classes = ["ant", "bee", "wasp"]
    ids = np.array([f"{index:016x}" for index in range(len(truth))])
    labels, _ = flip(truth, 6, classes=3, seed=2)
    # Twenty wasps dropped: the other ten's nearest images are mostly gone from the split.
    kept = np.flatnonzero((truth != 2) | (np.arange(len(truth)) % 3 == 0))
    split = pd.DataFrame(
        {
            "id": ids[kept],
            "path": [f"{image_id}.png" for image_id in ids[kept]],
            "label": [classes[label] for label in labels[kept]],
            "is_valid": np.arange(len(kept)) % 5 == 0,
        }
    )
    features[kept[1]] = features[kept[0]]  # a copy, in one near-duplicate group
    groups = pd.DataFrame({"id": ids[kept[:2]], "group": ids[kept[0]]})
    distances = neighbour_distances(features, 5)
    searched = audit(split, ids, features, distances, groups, classes, SETTINGS, seed=0)
    nearest = nearest_neighbours(features, 25)  # as the features rule searches, all images
    reused = audit(split, ids, features, distances, groups, classes, SETTINGS, 0, nearest)
    pd.testing.assert_frame_equal(reused, searched, rtol=1e-6)


def test_the_workflow_finds_a_wrong_label_a_duplicate_across_classes_and_an_off_topic_photo(
    tmp_path,
):
    """The tiny photo set with a red photo filed as green, a resized copy of a blue photo
    filed as red, a re-encoded copy of a green photo beside it, and a grey gradient saved
    twice."""
    write_photos(tmp_path, per_class=24)
    photos = tmp_path / "photos"
    (photos / "red/0.png").unlink()
    red = Image.blend(images.noise((40, 40), seed=0), Image.new("RGB", (40, 40), "red"), 0.8)
    red.save(photos / "green/was-red.png")
    # Photos that keep their pixels when resized (the tiny set's noise does not): a smooth one
    # as blue, its resized copy as red; a re-encoded copy of another beside it.
    smooth_photo(1, photos / "blue/smooth.png")
    with Image.open(photos / "blue/smooth.png") as blue:
        blue.resize((72, 54), Image.Resampling.BILINEAR).save(photos / "red/copy.jpg", quality=90)
    smooth_photo(2, photos / "green/smooth.png")
    with Image.open(photos / "green/smooth.png") as green:
        green.save(photos / "green/copy.jpg", quality=90)
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (40, 1))
    Image.fromarray(ramp).convert("RGB").save(photos / "blue/gradient.png")
    Image.fromarray(ramp).convert("RGB").save(photos / "blue/gradient.jpg", quality=90)
    # An outlier by its one nearest image: the gradient's is its copy, unless copies don't count.
    write_config(tmp_path, tiny_config(audit={"image_size": 64, "neighbours": 1}))
    snakemake(tmp_path, "--cores", "2", "results/audit/audit.csv")

    manifest = read_csv(tmp_path / "results/verify/manifest.csv")
    source = {
        Path(path).relative_to("photos").as_posix(): image_id
        for path, image_id in zip(manifest["source"], manifest["id"], strict=True)
    }
    found = read_csv(tmp_path / "results/audit/audit.csv").set_index("id")
    wrong = found.loc[source["green/was-red.png"]]
    assert (wrong["issue"], wrong["suggested"]) == ("label", "red")
    pair = found.loc[[source["blue/smooth.png"], source["red/copy.jpg"]]]
    assert pair["duplicate_group"].nunique() == 1 and pair["duplicate_group"].iloc[0] != ""
    # Those labelled against the pair's pooled evidence, all suggested the pair's one class.
    flagged = pair[pair["issue"] != ""]
    assert set(flagged["issue"]) <= {"label", "near_duplicate"} and len(flagged) >= 1
    assert flagged["suggested"].nunique() == 1
    assert (flagged["suggested"] != flagged["label"]).all()
    # The off-topic photo, found twice: its copy does not make it less off-topic.
    gradients = [source["blue/gradient.png"], source["blue/gradient.jpg"]]
    assert found.loc[gradients, "issue"].tolist() == ["outlier", "outlier"]
    groups = read_csv(tmp_path / "results/features/near_duplicates.csv")
    grouped = groups.groupby("group")["id"].apply(set).tolist()
    assert {source["green/smooth.png"], source["green/copy.jpg"]} in grouped
    split = read_csv(tmp_path / "results/split/split.csv").set_index("id")["is_valid"]
    for members in grouped:
        assert split[list(members)].nunique() == 1  # each group on one side
    assert (found["issue"] != "").sum() <= 8  # a handful to look at, not the whole set


def test_a_manifest_without_images_gives_empty_features_not_a_crash():
    features = image_features([], "efficientnet_lite0", 64, 8, 1, torch.device("cpu"))
    assert features.shape == (0, 0) and neighbour_distances(features, 5).shape == (0,)
    assert near_duplicate_groups([], [], features, 0.9, 0.99).columns.tolist() == ["id", "group"]
