"""Where the workflow leaves the files that the commands outside it read (the review and the
cleaner). The rules name these outputs with the same constants, so the two cannot drift."""

URL_LISTS = "results/urls"  # one list a class, {cls}.txt, that download reads
MANIFEST = "results/verify/manifest.csv"
SPLIT = "results/split/split.csv"
REVIEW = "results/interpret/review.csv"
