"""Rule features: the pretrained body's features of every verified image, and the
near-duplicates among them. Labels play no part, so a labels edit does not rerun it.

Input: manifest (verify's).
Outputs: features (features.npz: ids, features of length 1, each image's mean distance to
its nearest neighbours but its near-duplicates, and each image's nearest images with their
similarities); near_duplicates (CSV: id, group, for the images in a group).
"""

import logging
import time

import numpy as np

from imgclf.features import image_features, near_duplicate_groups
from imgclf.files import read_csv, write_arrays, write_csv
from imgclf.job import start_torch
from imgclf.logs import setup_logging
from imgclf.neighbours import CANDIDATES, copy_codes, nearest_neighbours, neighbour_distances

BATCH = 16  # at 224 px on 2 CPU cores, 1.4x faster than 64 (the activations fit the caches)


def main(inputs, outputs, arch: str, audit: dict, threads: int) -> None:
    """`audit`: the audit section of the config, of which this rule reads image_size,
    duplicate_similarity, duplicate_pixels and neighbours. (Not imgclf.audit's AuditSettings:
    importing that module loads scikit-learn, 0.8 s of this rule's start-up.)"""
    manifest = read_csv(inputs.manifest)
    device = start_torch(threads)
    paths, ids = manifest["path"].tolist(), manifest["id"].tolist()
    features = image_features(paths, arch, audit["image_size"], BATCH, threads, device)
    started = time.perf_counter()
    # The one search of all pairs: both the near-duplicates' candidates and the neighbours
    # that outlier distances average over (with room for the copies that they skip).
    nearest = nearest_neighbours(features, CANDIDATES + audit["neighbours"])
    logging.info("nearest images searched in %.1f s", time.perf_counter() - started)
    groups = near_duplicate_groups(
        ids,
        paths,
        features,
        audit["duplicate_similarity"],
        audit["duplicate_pixels"],
        threads,
        nearest,
    )
    copies = copy_codes(manifest["id"], groups)
    distances = neighbour_distances(features, audit["neighbours"], copies, nearest)
    write_arrays(
        outputs.features,
        ids=np.array(ids, dtype=str),
        features=features,
        distances=distances,
        # For the audit's votes, which would search all pairs again without them.
        nearest_indices=nearest[0].astype(np.int32),
        nearest_similarities=nearest[1].astype(np.float32),  # float32 products: exact
    )
    write_csv(outputs.near_duplicates, groups)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(
        snakemake.input,
        snakemake.output,
        snakemake.params.arch,
        snakemake.params.settings,
        snakemake.threads,
    )
