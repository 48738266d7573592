"""Rule fetch_urls: write each class's image URLs or paths, one per line.

Inputs: what the classes' sources name (URL lists, folders' images, unpacked archives, the
demo), as sources.class_inputs lists them.
Outputs: results/urls/{cls}.txt, one per class, in the order of params.sources.
"""

import logging

from imgclf.files import write_text
from imgclf.logs import setup_logging
from imgclf.sources import class_inputs, class_urls, source_kind


def main(sources: dict[str, dict], outputs: list[str]) -> None:
    inputs = class_inputs(sources)
    for (label, source), output in zip(sources.items(), outputs, strict=True):
        urls = class_urls(source_kind(source), source, label, inputs[label])
        write_text(output, "".join(url + "\n" for url in urls))
        logging.info("%s: %d URLs", label, len(urls))


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(snakemake.params.sources, list(snakemake.output))
