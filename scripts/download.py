"""Rule download: fetch one class's URL list and report each URL.

Input: results/urls/{cls}.txt.
Output: results/download/{cls}.csv, a row per URL (its file or its error); the files go to
results/download/{cls}/ beside it.
"""

from pathlib import Path

from imgclf.download import DownloadSettings, download_urls
from imgclf.files import write_csv
from imgclf.logs import setup_logging
from imgclf.sources import read_url_list


def main(url_list: str, table: str, settings: dict) -> None:
    urls = read_url_list(Path(url_list).read_text())
    store = Path(table).with_suffix("")  # results/download/{cls}.csv -> results/download/{cls}/
    write_csv(table, download_urls(urls, store, DownloadSettings(**settings)))


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(snakemake.input[0], snakemake.output[0], snakemake.params.settings)
