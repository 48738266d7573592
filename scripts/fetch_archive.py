"""Rule fetch_archive: download (if it is a URL) and unpack an archive that classes share."""

from pathlib import Path

from imgclf.archives import Limits, fetch_archive
from imgclf.logs import setup_logging

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    fetch_archive(
        snakemake.params.location, Path(snakemake.output[0]), Limits(**snakemake.params.limits)
    )
