"""The cleaning loop: apply the decisions of interpret's review table to the labels file.

    python -m imgclf.review [results/interpret/review.csv] [--config config.yaml]

A decision is a class name (relabel), `drop` (remove the image), or `keep` / empty (no change).
Everything is checked before the labels file is touched; it is rewritten atomically, and not
at all when nothing changes, so applying the same review twice reruns nothing.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from .config import read_config
from .files import TableError, read_csv
from .labels import DROP, LabelChanges, LabelsError, write_decisions
from .layout import MANIFEST, REVIEW

KEEP = "keep"


class ReviewError(ValueError):
    """The review cannot be applied; the message says which rows and why."""


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


def apply_review(review: str, labels_path: str, manifest: str, classes: list[str]) -> LabelChanges:
    """Write the review's decisions into the labels file; nothing is written on an error."""
    decisions = read_decisions(read_csv(review), classes)
    images = read_csv(manifest)
    unknown = [image_id for image_id in decisions if image_id not in set(images["id"])]
    if unknown:
        raise ReviewError(
            f"{len(unknown)} id(s) of the review are not in the manifest: {', '.join(unknown[:10])}"
        )
    return write_decisions(labels_path, images, decisions, classes)


def main(argv: list[str] | None = None, prog: str = "python -m imgclf.review") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("review", nargs="?", default=REVIEW, help=f"default: {REVIEW}")
    parser.add_argument(
        "--config", default="config.yaml", help="the workflow's config: its classes and labels file"
    )
    parser.add_argument("--manifest", default=MANIFEST, help=f"default: {MANIFEST}")
    args = parser.parse_args(argv)
    for path in (args.review, args.config, args.manifest):
        if not Path(path).is_file():
            parser.error(f"{path} does not exist")
    config = read_config(args.config)
    labels_path = config["labels"]
    try:
        changes = apply_review(args.review, labels_path, args.manifest, list(config["classes"]))
    except (ReviewError, LabelsError, TableError) as error:
        print(f"error: {error}; {labels_path} is unchanged", file=sys.stderr)
        return 1
    summary = (
        f"{labels_path}: {changes.relabelled} relabelled, {changes.dropped} dropped, "
        f"{changes.unchanged} already so."
    )
    if changes.relabelled or changes.dropped:
        print(f"{summary} Now run `snakemake --cores 4`: split and the stages after it rerun.")
    else:
        print(f"{summary} Nothing changed, nothing to rerun.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
