"""Rule fetch_urls: write one class's image URLs or paths, one per line.

Inputs: what the class's source names (a URL list, a folder, an unpacked archive, the demo).
Output: results/urls/{cls}.txt.
"""

import logging

from imgclf.files import write_text
from imgclf.logs import setup_logging
from imgclf.sources import class_urls, source_kind


def main(source: dict, label: str, inputs: list[str], output: str) -> None:
    urls = class_urls(source_kind(source), source, label, inputs)
    write_text(output, "".join(url + "\n" for url in urls))
    logging.info("%s: %d URLs", label, len(urls))


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(
        snakemake.params.source,
        snakemake.wildcards.cls,
        list(snakemake.input),
        snakemake.output[0],
    )
