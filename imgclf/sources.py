"""fetch_urls: turn each class's source into a plain list of URLs or local paths."""

import hashlib
import logging
import re
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import requests
from tqdm import tqdm

log = logging.getLogger(__name__)

SOURCE_KINDS = ("urls", "search", "folder", "archive", "demo")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


class SourceError(Exception):
    """A class's source cannot give a URL list; the message says which and why."""


def source_kind(source: dict) -> str:
    """The one source key of a class's config entry (validated by imgclf.config)."""
    return next(kind for kind in SOURCE_KINDS if kind in source)


DEMO_PATTERN = r"^([^/]+)/"  # the demo writes one folder per class


def class_urls(kind: str, source: dict, label: str, inputs: list[str]) -> list[str]:
    """The URLs or paths of one class's images, from its config entry and the rule's inputs.

    `inputs` is the URL list file, the folder's matching files, or the unpacked archive or
    demo folder, as workflow/rules/data.smk gives them.
    """
    if kind == "urls":
        urls = read_url_list(Path(inputs[0]).read_text())
    elif kind == "search":
        urls = search_images(source["search"], source["max_results"])
    elif kind == "folder":
        urls = list(inputs)
    else:
        urls = list_images(inputs[0], source.get("pattern", DEMO_PATTERN), label)
    if not urls:
        raise SourceError(f"class {label!r}: its {kind} source gives no images ({source})")
    return urls


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def read_url_list(text: str) -> list[str]:
    """URLs one per line; blank lines and # comments ignored; duplicates dropped, order kept."""
    lines = (line.strip() for line in text.splitlines())
    return list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))


def list_images(
    root: str | Path, pattern: str | None = None, label: str | None = None
) -> list[str]:
    """Image files under `root`, sorted; with `pattern`, those whose first group equals `label`.

    The pattern is searched in the path relative to `root` with '/' separators, so it can
    match a file name (`^(.+)_\\d+\\.jpg$`, fastai's `from_name_re`) or a folder (`(ants|bees)/`).
    """
    root = Path(root)
    files = sorted(
        path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    if pattern is None:
        return [str(path) for path in files]
    regex = re.compile(pattern)
    selected = []
    for path in files:
        match = regex.search(path.relative_to(root).as_posix())
        if match and match.group(1) == label:
            selected.append(str(path))
    return selected


def search_images(query: str, max_results: int) -> list[str]:
    """Image URLs from a web image search (DuckDuckGo and others, through `ddgs`)."""
    from ddgs import DDGS
    from ddgs.exceptions import DDGSException

    try:
        results = DDGS(timeout=20).images(query, max_results=max_results)
    except DDGSException as error:
        raise SourceError(
            f"image search for {query!r} failed: {error}. The search needs the internet; "
            "offline, give this class a URL list or a folder instead."
        ) from error
    urls = list(dict.fromkeys(result["image"] for result in results if result.get("image")))
    if not urls:
        raise SourceError(f"image search for {query!r} found no images")
    return urls[:max_results]


def archive_dir_name(location: str) -> str:
    """A folder name for an archive's contents: readable, and unique per URL or path."""
    name = Path(urlparse(location).path).name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        name = name.removesuffix(suffix)
    digest = hashlib.sha256(location.encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def download_file(url: str, dest: Path, timeout: float = 60) -> None:
    """Stream a (large) file to `dest` with a progress bar; `dest` is a temporary path."""
    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        total = int(response.headers.get("Content-Length", 0)) or None
        with open(dest, "wb") as out, tqdm(total=total, unit="B", unit_scale=True) as bar:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a tar or zip archive into `dest`, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)  # zipfile drops '..' and absolute parts from member names
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    else:
        raise SourceError(f"{archive} is neither a tar nor a zip archive")


def fetch_archive(location: str, dest: Path) -> None:
    """Download (when `location` is a URL) and unpack an archive into `dest`."""
    if not is_url(location):
        extract_archive(Path(location), dest)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    download = dest.with_name(dest.name + ".download")
    try:
        download_file(location, download)
    except requests.RequestException as error:
        raise SourceError(f"cannot download archive {location}: {error}") from error
    try:
        extract_archive(download, dest)
    finally:
        download.unlink()
