"""fetch_urls: turn each class's source into a plain list of URLs or local paths."""

import hashlib
import logging
import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

SOURCE_KINDS = ("urls", "search", "folder", "archive", "demo")
# Sources whose files the workflow lists itself, so their local paths are what the user named;
# the others' lists come from someone else and may not name local files (download.allow_local).
LOCAL_KINDS = ("folder", "archive", "demo")
ARCHIVES_DIR = "results/archives"  # where fetch_archive unpacks each archive, a folder apiece
DEMOS_DIR = "results/demo"  # where write_demo writes each demo set
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


def class_max_images(source: dict, url_list_cap: int) -> int | None:
    """The most images a class keeps: its own `max_images`, else `url_list_cap` for a URL list
    or search (someone else's list, which can run to thousands of off-topic results) and no
    cap for a folder, archive or demo, which hold the user's own data."""
    if "max_images" in source:
        return source["max_images"]
    return None if source_kind(source) in LOCAL_KINDS else url_list_cap


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def read_url_list(text: str) -> list[str]:
    """URLs one per line; blank lines and # comments ignored; duplicates dropped, order kept."""
    lines = (line.strip() for line in text.splitlines())
    return list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))


def image_files(root: str | Path) -> list[Path]:
    """Image files under `root`, sorted."""
    return sorted(images_under(root))


def images_under(root: str | Path) -> Iterator[Path]:
    """Image files under `root` as the listing finds them: `next()` of it tells whether a
    folder holds any without listing all of it."""
    return (
        path
        for path in Path(root).rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


def list_images(
    root: str | Path,
    pattern: str | None = None,
    label: str | None = None,
    files: list[Path] | None = None,
) -> list[str]:
    """Image files under `root`, sorted; with `pattern`, those whose first group equals `label`.

    The pattern is searched in the path relative to `root` with '/' separators, so it can
    match a file name (`^(.+)_\\d+\\.jpg$`, fastai's `from_name_re`) or a folder (`(ants|bees)/`).
    `files`: image_files(root), when the caller lists one folder for many classes.
    """
    root = Path(root)
    files = image_files(root) if files is None else files
    if pattern is None:
        return [str(path) for path in files]
    regex = re.compile(pattern)
    selected = []
    for path in files:
        match = regex.search(path.relative_to(root).as_posix())
        if match and match.group(1) == label:
            selected.append(str(path))
    return selected


def class_inputs(sources: dict[str, dict]) -> dict[str, list[str]]:
    """Per class, what its list of URLs is made from, and so what makes fetch_urls run again:
    its URL list file; its folder's images (each folder listed once, however many classes
    share it with a pattern: 37 pet breeds, or 1,000 classes, in one tree); its unpacked
    archive or demo folder."""
    listings: dict[str, list[Path]] = {}
    inputs = {}
    for label, source in sources.items():
        kind = source_kind(source)
        if kind == "urls":
            inputs[label] = [source["urls"]]
        elif kind == "folder":
            folder = source["folder"]
            if folder not in listings:
                listings[folder] = image_files(folder)
            files = listings[folder]
            inputs[label] = list_images(folder, source.get("pattern"), label, files)
        elif kind == "archive":
            inputs[label] = [f"{ARCHIVES_DIR}/{archive_dir_name(source['archive'])}"]
        elif kind == "demo":
            inputs[label] = [f"{DEMOS_DIR}/{source['demo']}"]
        else:
            inputs[label] = []
    return inputs


CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as the schema's propertyNames
URL_LIST_NAME = re.compile(r"^urls_(.+)\.txt$")


def found_classes(spec: dict) -> dict[str, dict]:
    """Each class found in the data that `classes_from` names, with its own source, as if the
    config had listed them (sorted):

    - folder: every sub-folder that holds images is a class (fastai's from_folder);
    - folder (or a local archive) and pattern: the pattern's group 1 in each image's path
      inside it is its class (fastai's from_name_re: the pets' 37 breeds from their names);
    - url_lists: every urls_<class>.txt in the folder is a class's URL list.

    A name that a class may not have stops the run, naming where it came from.
    """
    if "archive" in spec:
        return archive_classes(spec["archive"], spec["pattern"])
    folder = Path(spec.get("folder") or spec["url_lists"])
    if not folder.is_dir():
        raise SourceError(f"classes_from: folder {str(folder)!r} does not exist")
    if "url_lists" in spec:
        matches = ((URL_LIST_NAME.match(path.name), path) for path in sorted(folder.iterdir()))
        found = {match[1]: ({"urls": str(path)}, path) for match, path in matches if match}
    elif "pattern" in spec:
        regex = re.compile(spec["pattern"])
        found = {}
        for path in image_files(folder):
            match = regex.search(path.relative_to(folder).as_posix())
            if match and match[1] not in found:
                found[match[1]] = ({"folder": str(folder), "pattern": spec["pattern"]}, path)
    else:
        found = {
            child.name: ({"folder": str(child)}, child)
            for child in sorted(folder.iterdir())
            if child.is_dir()
            and not child.name.startswith(".")
            and next(images_under(child), None) is not None
        }
    return checked_classes(found, folder)


def archive_classes(archive: str, pattern: str) -> dict[str, dict]:
    """The classes in the names of a local archive's images: its listing, not its contents,
    is read when the workflow starts; fetch_archive unpacks it once for them all."""
    if is_url(archive) or not Path(archive).is_file():
        raise SourceError(
            f"classes_from: archive {archive!r} is not a local file: the classes are found "
            "when the workflow starts, before anything is downloaded; download it first, or "
            "list the classes under classes"
        )
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                names = opened.namelist()
        else:
            with tarfile.open(archive) as opened:
                names = opened.getnames()
    except (tarfile.TarError, OSError) as error:
        raise SourceError(f"classes_from: archive {archive} cannot be listed: {error}") from None
    regex = re.compile(pattern)
    found = {}
    for name in sorted(names):
        match = regex.search(name)
        if Path(name).suffix.lower() in IMAGE_SUFFIXES and match and match[1] not in found:
            found[match[1]] = ({"archive": archive, "pattern": pattern}, f"{archive}:{name}")
    return checked_classes(found, Path(archive))


def checked_classes(found: dict[str, tuple[dict, object]], where: Path) -> dict[str, dict]:
    """The found classes' sources, sorted, once every name is one a class may have."""
    for name, (_, origin) in found.items():
        if not CLASS_NAME.match(name) or name == "drop":
            raise SourceError(
                f"classes_from: {origin} gives the class name {name!r}; a class name is letters, "
                "digits and _ . - (not first), and not 'drop' (the word for leaving an image "
                "out): rename it, or list the classes under classes"
            )
    if len(found) < 2:
        raise SourceError(
            f"classes_from: {where} gives {len(found)} class(es) ({', '.join(found) or 'none'}); "
            "a classifier needs at least two"
        )
    return {name: found[name][0] for name in sorted(found)}


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
