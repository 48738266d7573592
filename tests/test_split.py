import hashlib

import pandas as pd
import pytest

from imgclf.labels import LabelsError, apply_labels
from imgclf.split import make_split, split_images

CLASSES = ["ant", "bee"]


def manifest(count_per_class=100, classes=CLASSES, folder=lambda index: "photos"):
    rows = []
    for label in classes:
        for index in range(count_per_class):
            image_id = hashlib.sha256(f"{label}{index}".encode()).hexdigest()[:16]
            rows.append(
                {
                    "id": image_id,
                    "path": f"results/verify/images/{image_id}.jpg",
                    "label": label,
                    "source": f"{folder(index)}/{label}/{index}.jpg",
                }
            )
    return pd.DataFrame(rows)


def sides(split: pd.DataFrame) -> dict[str, bool]:
    return dict(zip(split["id"], split["is_valid"], strict=True))


def test_split_is_seeded_and_roughly_stratified():
    images = manifest(500)
    split = split_images(images, valid_pct=0.2, seed=1)
    assert sides(split) == sides(split_images(images, valid_pct=0.2, seed=1))
    assert sides(split) != sides(split_images(images, valid_pct=0.2, seed=2))
    for _, per_class in split.groupby("label"):
        assert 0.15 < per_class["is_valid"].mean() < 0.25


def test_adding_removing_or_relabelling_one_image_moves_no_other():
    images = manifest(50)
    before = sides(split_images(images, 0.3, seed=7))
    extra = pd.DataFrame([{"id": "f" * 16, "path": "x", "label": "ant", "source": "new"}])
    changes = [
        pd.concat([images, extra], ignore_index=True),
        images.drop(index=3),
        images.assign(label=images["label"].where(images.index != 5, "bee")),
    ]
    for changed in changes:
        after = sides(split_images(changed, 0.3, seed=7))
        assert {key: after[key] for key in before if key in after} == {
            key: before[key] for key in after if key in before
        }


def test_small_classes_get_a_train_and_a_valid_image():
    split = split_images(manifest(2), valid_pct=0.01, seed=0)
    assert split.groupby("label")["is_valid"].sum().tolist() == [1, 1]
    split = split_images(manifest(2), valid_pct=0.99, seed=0)
    assert split.groupby("label")["is_valid"].sum().tolist() == [1, 1]


def test_a_split_given_by_folders_is_honoured():
    images = manifest(10, folder=lambda index: "data/val" if index < 3 else "data/train")
    split = split_images(images, valid_pct=0.5, seed=0, valid_folder="val")
    assert split.groupby("label")["is_valid"].sum().tolist() == [3, 3]


def test_labels_relabel_and_drop():
    images = manifest(3)
    ids = images["id"].tolist()
    labels = pd.DataFrame({"id": [ids[0], ids[1], ids[2]], "label": ["bee", "drop", " "]})
    relabelled = apply_labels(images, labels, CLASSES)
    assert ids[1] not in relabelled["id"].values and ids[2] not in relabelled["id"].values
    assert relabelled.set_index("id").loc[ids[0], "label"] == "bee"
    assert len(relabelled) == len(images) - 2


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"id": ["0" * 16], "label": ["bee"]}, "not in the manifest: 0000000000000000"),
        ({"id": ["{first}"], "label": ["wasp"]}, "not classes .*'wasp'"),
        ({"id": ["{first}", "{first}"], "label": ["bee", "ant"]}, "more than once"),
        ({"image": ["{first}"], "label": ["bee"]}, "lacks column"),
    ],
)
def test_bad_labels_files_are_clear_errors(labels, message):
    images = manifest(3)
    first = images["id"][0]
    table = pd.DataFrame(
        {key: [value.format(first=first) for value in values] for key, values in labels.items()}
    )
    with pytest.raises(LabelsError, match=message):
        make_split(images, table, CLASSES, 0.2, 0)


def test_make_split_writes_the_documented_columns():
    split = make_split(manifest(5), None, CLASSES, 0.2, 0)
    assert list(split.columns) == ["id", "path", "label", "is_valid"]
    assert split["id"].is_monotonic_increasing


def test_a_near_duplicate_group_lands_on_one_side_and_other_images_keep_theirs():
    images = manifest(200)
    alone = sides(split_images(images, 0.2, seed=3))
    ids = images["id"].tolist()
    # Groups of two and three across classes, each named by one of its members.
    groups = {ids[0]: ids[0], ids[250]: ids[0], ids[7]: ids[7], ids[8]: ids[7], ids[9]: ids[7]}
    grouped = sides(split_images(images, 0.2, seed=3, groups=groups))
    for members in ([ids[0], ids[250]], [ids[7], ids[8], ids[9]]):
        assert len({grouped[image_id] for image_id in members}) == 1
        assert grouped[members[0]] == alone[members[0]]  # the group goes where its name went
    assert {key: side for key, side in grouped.items() if key not in groups} == {
        key: side for key, side in alone.items() if key not in groups
    }
