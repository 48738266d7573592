"""Rule fetch_urls: write each class's image URLs or paths, one per line.

Inputs: what the classes' sources name (URL lists, folders' images, unpacked archives, the
demo), as sources.class_inputs lists them.
Output: the folder of lists, results/urls/, with {cls}.txt for each class.
"""

import logging
from pathlib import Path

from imgclf.files import write_text
from imgclf.logs import setup_logging
from imgclf.sources import class_inputs, class_urls, source_kind


def main(sources: dict[str, dict], folder: str) -> None:
    inputs = class_inputs(sources)
    for label, source in sources.items():
        urls = class_urls(source_kind(source), source, label, inputs[label])
        write_text(Path(folder) / f"{label}.txt", "".join(url + "\n" for url in urls))
        logging.info("%s: %d URLs", label, len(urls))


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(snakemake.params.sources, snakemake.output[0])
