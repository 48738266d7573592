"""Rule audit: every image of the split checked without trusting its label: wrong labels
(confident learning on out-of-fold probabilities), near-duplicates under different labels,
outliers. interpret puts its findings at the head of the review queue.

Inputs: split (split.csv); features (features.npz) and near_duplicates (CSV), the features
rule's.
Output: audit.csv, every image with its issue ('' for none), suggested label and scores,
the likeliest problems first.
"""

from imgclf.audit import AuditSettings, audit
from imgclf.files import read_arrays, read_csv, write_csv
from imgclf.logs import setup_logging
from imgclf.split import read_split

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    arrays = read_arrays(snakemake.input.features)
    ids, features, distances = arrays["ids"], arrays["features"], arrays["distances"]
    table = audit(
        read_split(snakemake.input.split),
        ids,
        features,
        distances,
        read_csv(snakemake.input.near_duplicates),
        snakemake.params.classes,
        AuditSettings(**snakemake.params.settings),
        snakemake.params.seed,
        (arrays["nearest_indices"], arrays["nearest_similarities"]),
    )
    write_csv(snakemake.output[0], table)
