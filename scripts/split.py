"""Rule split: apply the user's labels file and split train/valid, stably.

Inputs: manifest (verify's); near_duplicates (the features rule's groups, which land on
one side together); labels (the user's labels file, when it exists).
Output: split.csv, a row per image with its label and is_valid.
"""

import logging

from snakemake.utils import validate

from imgclf.config import schema
from imgclf.files import read_csv, write_csv
from imgclf.logs import setup_logging
from imgclf.split import make_split


def main(inputs, output: str, classes: list[str], seed: int, settings: dict, labels_schema: str):
    labels = None
    if inputs.labels:
        labels = read_csv(inputs.labels)
        validate(labels, labels_schema)
    near_duplicates = read_csv(inputs.near_duplicates)
    split = make_split(
        read_csv(inputs.manifest),
        labels,
        classes,
        settings["valid_pct"],
        seed,
        settings["valid_folder"],
        groups=dict(zip(near_duplicates["id"], near_duplicates["group"], strict=True)),
    )
    write_csv(output, split)
    counts = split.groupby(["label", "is_valid"]).size().unstack(fill_value=0)
    logging.info("images per class (train: False, valid: True):\n%s", counts)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(
        snakemake.input,
        snakemake.output[0],
        snakemake.params.classes,
        snakemake.params.seed,
        snakemake.params.settings,
        schema("labels"),
    )
