"""The labels file: the user's corrections (id, label) that split applies to the manifest,
and that `python -m imgclf.review` and the browser cleaner write."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .files import locked, read_csv, write_csv

DROP = "drop"


class LabelsError(ValueError):
    """The labels file cannot be applied; the message says which rows and why."""


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels file, or an empty table when it does not exist yet."""
    if Path(path).exists():
        return read_csv(path)
    return pd.DataFrame({"id": [], "label": []}, dtype=str)


def label_overrides(labels: pd.DataFrame) -> dict[str, str]:
    """id -> label of the labels table, as split reads it."""
    return dict(zip(labels["id"].str.strip(), labels["label"].str.strip(), strict=True))


def apply_labels(manifest: pd.DataFrame, labels: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Relabel the manifest's images by the labels table (id, label); `drop` or '' removes."""
    missing = {"id", "label"} - set(labels.columns)
    if missing:
        raise LabelsError(f"labels file lacks column(s) {', '.join(sorted(missing))}")
    labels = labels.assign(id=labels["id"].str.strip(), label=labels["label"].str.strip())
    repeated = labels["id"][labels["id"].duplicated()].unique()
    if len(repeated):
        raise LabelsError(f"labels file lists these ids more than once: {', '.join(repeated)}")
    unknown = labels["id"][~labels["id"].isin(manifest["id"])]
    if len(unknown):
        raise LabelsError(
            f"labels file has {len(unknown)} id(s) that are not in the manifest: "
            f"{', '.join(unknown[:10])}"
        )
    bad = labels[~labels["label"].isin([*classes, DROP, ""])]
    if len(bad):
        raise LabelsError(
            "labels file has label(s) that are not classes "
            f"({', '.join(classes)}), '{DROP}' or empty: "
            + ", ".join(f"{row.id}={row.label!r}" for row in bad.head(10).itertuples())
        )
    overrides = dict(zip(labels["id"], labels["label"], strict=True))
    new_labels = [
        overrides.get(image_id, label)
        for image_id, label in zip(manifest["id"], manifest["label"], strict=True)
    ]
    relabelled = manifest.assign(label=new_labels)
    return relabelled[~relabelled["label"].isin([DROP, ""])]


@dataclass
class LabelChanges:
    """What a set of decisions did to the labels file."""

    relabelled: int
    dropped: int
    unchanged: int


def updated_labels(
    labels: pd.DataFrame, manifest: pd.DataFrame, decisions: dict[str, str]
) -> tuple[pd.DataFrame, LabelChanges]:
    """The labels table with the decisions in it: rows whose label changes are updated or
    added, in place; a decision that is already the image's label changes nothing. Every
    decided id is one of the manifest's."""
    current = dict(zip(manifest["id"], manifest["label"], strict=True))
    current.update(label_overrides(labels))
    changes = {
        image_id: decision
        for image_id, decision in decisions.items()
        if current[image_id] != decision and not (decision == DROP and current[image_id] == "")
    }
    labels = labels.copy()
    existing = labels["id"].str.strip().isin(changes)
    labels.loc[existing, "label"] = labels.loc[existing, "id"].str.strip().map(changes)
    added = [image_id for image_id in changes if image_id not in set(labels["id"].str.strip())]
    new_rows = pd.DataFrame(
        {"id": added, "label": [changes[image_id] for image_id in added]}, dtype=str
    )
    labels = pd.concat([labels, new_rows], ignore_index=True)
    dropped = sum(decision == DROP for decision in changes.values())
    return labels, LabelChanges(len(changes) - dropped, dropped, len(decisions) - len(changes))


def write_decisions(
    labels_path: str | Path, manifest: pd.DataFrame, decisions: dict[str, str], classes: list[str]
) -> LabelChanges:
    """Put decisions (id -> class or drop) into the labels file; nothing is written on an
    error, nor when nothing changes. The read and the write are one step under a lock, so the
    cleaner and `python -m imgclf.review` at once lose no decision."""
    with locked(labels_path):
        labels = read_labels(labels_path)
        new_labels, result = updated_labels(labels, manifest, decisions)
        apply_labels(manifest, new_labels, classes)  # the checks split makes, before writing
        if result.relabelled or result.dropped:
            write_csv(labels_path, new_labels)
    return result
