"""Rule fetch_archive: download (if it is a URL) and unpack an archive that classes share.

Inputs: the archive (params.location: a URL, or a file that is also the rule's input).
Output: a folder of the archive's regular files, within archives' limits.
"""

from pathlib import Path

from imgclf.archives import Limits, fetch_archive
from imgclf.logs import setup_logging

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    fetch_archive(
        snakemake.params.location, Path(snakemake.output[0]), Limits(**snakemake.params.limits)
    )
