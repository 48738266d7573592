"""Where the workflow leaves the files that the commands outside it read (the review and the
cleaner). The rules name these outputs with the same constants, so the two cannot drift."""

URL_LISTS = "results/urls"  # one list a class, {cls}.txt, that download reads
MANIFEST = "results/verify/manifest.csv"
SPLIT = "results/split/split.csv"
REVIEW = "results/interpret/review.csv"
RUN_LOCK = ".snakemake/imgclf-run.lock"  # held by the run working in the folder

# The rule that writes the files under each folder of results/ (and of an experiment's folder
# in it), so that an error about a damaged file can say which rule rebuilds it.
WRITERS = {
    "demo": "write_demo",
    "archives": "fetch_archive",
    "urls": "fetch_urls",
    "download": "download",
    "verify": "verify",
    "pack": "pack",
    "features": "features",
    "split": "split",
    "audit": "audit",
    "lr_find": "lr_find",
    "train/stage1": "train_stage1",
    "train/stage2": "finetune_stage2",
    "interpret": "interpret",
    "export": "export",
    "compare": "compare",
    "predict": "predict",
    "overview.html": "overview",
}


def rule_writing(path: str) -> str | None:
    """The rule that writes `path`, a file of the workflow's results; None for other files."""
    parts = path.split("/")
    if parts[0] != "results" or len(parts) < 2:
        return None
    rest = parts[3:] if parts[1] == "experiments" else parts[1:]
    return WRITERS.get("/".join(rest[:2])) or WRITERS.get(rest[0])
