"""The cleaning loop: apply the decisions of interpret's review table to the labels file.

    python -m imgclf.review [results/interpret/review.csv] [--config config.yaml]

A decision is a class name (relabel), `drop` (remove the image), or `keep` / empty (no change).
Everything is checked before the labels file is touched; it is rewritten atomically, and not
at all when nothing changes, so applying the same review twice reruns nothing.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import read_config
from .files import TableError, locked, read_csv, write_csv
from .split import DROP, LabelsError, apply_labels

KEEP = "keep"
REVIEW = "results/interpret/review.csv"
MANIFEST = "results/verify/manifest.csv"


class ReviewError(ValueError):
    """The review cannot be applied; the message says which rows and why."""


@dataclass
class Outcome:
    relabelled: int
    dropped: int
    unchanged: int


def read_decisions(review: pd.DataFrame, classes: list[str]) -> dict[str, str]:
    """id -> decision for the rows that ask for a change of label or a drop."""
    missing = {"id", "decision"} - set(review.columns)
    if missing:
        raise ReviewError(f"the review lacks column(s) {', '.join(sorted(missing))}")
    review = review.assign(id=review["id"].str.strip(), decision=review["decision"].str.strip())
    bad = review[~review["decision"].isin([*classes, DROP, KEEP, ""])]
    if len(bad):
        raise ReviewError(
            f"decisions must be a class ({', '.join(classes)}), '{DROP}', '{KEEP}' or empty: "
            + ", ".join(f"{row.id}={row.decision!r}" for row in bad.head(10).itertuples())
        )
    wanted = review[~review["decision"].isin([KEEP, ""])].drop_duplicates(["id", "decision"])
    conflicting = wanted["id"][wanted["id"].duplicated()].unique()
    if len(conflicting):
        raise ReviewError(f"different decisions for the same id: {', '.join(conflicting)}")
    return dict(zip(wanted["id"], wanted["decision"], strict=True))


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels file, or an empty table when it does not exist yet."""
    if Path(path).exists():
        return read_csv(path)
    return pd.DataFrame({"id": [], "label": []}, dtype=str)


def label_overrides(labels: pd.DataFrame) -> dict[str, str]:
    """id -> label of the labels table, as split reads it."""
    return dict(zip(labels["id"].str.strip(), labels["label"].str.strip(), strict=True))


def updated_labels(
    labels: pd.DataFrame, manifest: pd.DataFrame, decisions: dict[str, str]
) -> tuple[pd.DataFrame, Outcome]:
    """The labels table with the decisions in it: rows whose label changes are updated or
    added, in place; a decision that is already the image's label changes nothing."""
    unknown = [image_id for image_id in decisions if image_id not in set(manifest["id"])]
    if unknown:
        raise ReviewError(
            f"{len(unknown)} id(s) of the review are not in the manifest: {', '.join(unknown[:10])}"
        )
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
    return labels, Outcome(len(changes) - dropped, dropped, len(decisions) - len(changes))


def write_decisions(
    labels_path: str | Path, manifest: pd.DataFrame, decisions: dict[str, str], classes: list[str]
) -> Outcome:
    """Put decisions (id -> class or drop) into the labels file; nothing is written on an
    error, nor when nothing changes. The read and the write are one step under a lock, so the
    cleaner and `python -m imgclf.review` at once lose no decision."""
    with locked(labels_path):
        labels = read_labels(labels_path)
        new_labels, outcome = updated_labels(labels, manifest, decisions)
        apply_labels(manifest, new_labels, classes)  # the checks split makes, before writing
        if outcome.relabelled or outcome.dropped:
            write_csv(labels_path, new_labels)
    return outcome


def apply_review(review: str, labels_path: str, manifest: str, classes: list[str]) -> Outcome:
    """Write the review's decisions into the labels file; nothing is written on an error."""
    decisions = read_decisions(read_csv(review), classes)
    return write_decisions(labels_path, read_csv(manifest), decisions, classes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m imgclf.review",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("review", nargs="?", default=REVIEW, help=f"default: {REVIEW}")
    parser.add_argument("--config", default="config.yaml",
                        help="the workflow's config: its classes and labels file")  # fmt: skip
    parser.add_argument("--manifest", default=MANIFEST, help=f"default: {MANIFEST}")
    args = parser.parse_args(argv)
    for path in (args.review, args.config, args.manifest):
        if not Path(path).is_file():
            parser.error(f"{path} does not exist")
    config = read_config(args.config)
    labels_path = config["labels"]
    try:
        outcome = apply_review(args.review, labels_path, args.manifest, list(config["classes"]))
    except (ReviewError, LabelsError, TableError) as error:
        print(f"error: {error}; {labels_path} is unchanged", file=sys.stderr)
        return 1
    summary = (f"{labels_path}: {outcome.relabelled} relabelled, {outcome.dropped} dropped, "
               f"{outcome.unchanged} already so.")  # fmt: skip
    if outcome.relabelled or outcome.dropped:
        print(f"{summary} Now run `snakemake --cores 4`: split and the stages after it rerun.")
    else:
        print(f"{summary} Nothing changed, nothing to rerun.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
