"""Rule download: fetch every class's URL list and report each URL.

Input: the folder of lists, results/urls/ ({cls}.txt for each class).
Outputs: results/download/{cls}.csv, a row per URL (its file or its error); each class's
files go to results/download/{cls}/ beside its table.
Params: settings, class -> the download section as it applies to that class.
"""

from pathlib import Path

from imgclf.download import DownloadSettings, download_urls
from imgclf.files import write_csv
from imgclf.logs import setup_logging
from imgclf.sources import read_url_list


def main(url_lists: str, tables: list[str], settings: dict[str, dict]) -> None:
    for table in tables:
        store = Path(table).with_suffix("")  # results/download/{cls}.csv -> .../{cls}/
        urls = read_url_list((Path(url_lists) / f"{store.name}.txt").read_text())
        write_csv(table, download_urls(urls, store, DownloadSettings(**settings[store.name])))


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(snakemake.input[0], list(snakemake.output), snakemake.params.settings)
