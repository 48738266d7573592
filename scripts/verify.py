"""Rule verify: decode and normalise every downloaded image.

Inputs: the download tables, results/download/{cls}.csv.
Outputs: manifest (the images kept), rejected (the others, and why), summary (per class,
CSV); images (the normalised images' folder).
"""

from pathlib import Path

from imgclf.files import read_csv, write_csv
from imgclf.logs import setup_logging
from imgclf.verify import VerifySettings, summarise, verify_downloads


def main(tables: list[str], outputs, settings: dict, threads: int, memory_mb: int) -> None:
    downloads = {Path(table).stem: read_csv(table) for table in tables}
    manifest, rejected = verify_downloads(
        downloads, outputs.images, VerifySettings(**settings), threads, memory_mb
    )
    write_csv(outputs.rejected, rejected)
    write_csv(outputs.summary, summarise(manifest, rejected, list(downloads)))
    write_csv(outputs.manifest, manifest)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input),
        snakemake.output,
        snakemake.params.settings,
        snakemake.threads,
        snakemake.resources.mem_mb,
    )
