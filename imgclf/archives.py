"""fetch_archive: download an archive that classes share and unpack its images, within limits.

An archive from the web is unpacked by this module's own loop rather than by tarfile's or
zipfile's extractall: only regular files and folders come out (image data needs no links, and
links are how members escape their folder, as CVE-2025-4517 did past tarfile's "data" filter
before Python 3.11.13), and what it unpacks is counted as it goes, so a bomb is refused.
"""

import logging
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import requests
import urllib3
from tqdm import tqdm

from .download import CHUNK_BYTES, Deadline, UrlFailed, body_chunks
from .files import writing_to
from .sources import SourceError, is_url

log = logging.getLogger(__name__)

READ_TIMEOUT = 60  # seconds a server may leave the download without a byte


@dataclass
class Limits:
    """The `archives` section of config.yaml; its schema gives the defaults."""

    max_bytes: int
    max_members: int
    max_ratio: float
    deadline: float


@dataclass
class Member:
    name: str
    size: int
    is_dir: bool
    is_file: bool
    open: Callable[[], IO[bytes]]


class ArchiveRefused(Exception):
    """The archive is past a limit or names a place outside its folder."""


def zip_members(archive: zipfile.ZipFile) -> Iterator[Member]:
    for info in archive.infolist():
        kind = (info.external_attr >> 16) & 0o170000  # the Unix file type, when one was stored
        is_file = not info.is_dir() and kind in (0, 0o100000)
        yield Member(
            info.filename,
            info.file_size,
            info.is_dir(),
            is_file,
            lambda info=info: archive.open(info),
        )


def tar_members(archive: tarfile.TarFile) -> Iterator[Member]:
    for info in archive:
        yield Member(
            info.name,
            info.size,
            info.isdir(),
            info.isfile(),
            lambda info=info: archive.extractfile(info),
        )


def member_path(dest: Path, name: str) -> Path:
    """Where a member lands; a name that leaves `dest` refuses the archive."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveRefused(f"member {name!r} would land outside the archive's folder")
    return dest.joinpath(*path.parts)  # "./" and "" are dest itself


def unpack(members: Iterator[Member], dest: Path, limits: Limits, archive_bytes: int) -> None:
    """Write the regular files and folders of `members` under `dest`, counting as it goes."""
    max_bytes = min(limits.max_bytes, limits.max_ratio * max(archive_bytes, 1))
    written, skipped = 0, 0
    for count, member in enumerate(members, start=1):
        if count > limits.max_members:
            raise ArchiveRefused(f"more than max_members={limits.max_members} members")
        if not (member.is_file or member.is_dir):
            skipped += 1
            continue
        target = member_path(dest, member.name)
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        if target == dest:
            raise ArchiveRefused(f"a file member is named {member.name!r}, which is no file name")
        with writing_to(dest):  # a full disk is the disk's fault, not the archive's
            target.parent.mkdir(parents=True, exist_ok=True)
            with member.open() as source, open(target, "wb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:
                        raise ArchiveRefused(
                            f"it unpacks to more than {max_bytes:.0f} bytes (max_bytes="
                            f"{limits.max_bytes}, or max_ratio={limits.max_ratio:g} times its "
                            f"{archive_bytes} bytes)"
                        )
                    out.write(chunk)
    if skipped:
        log.info("skipped %d members that are neither files nor folders (links, devices)", skipped)


def extract_archive(archive: Path, dest: Path, limits: Limits, name: str) -> None:
    """Unpack a tar or zip archive into `dest`, or leave no `dest` and say why not, naming
    the archive by `name` (its URL or path)."""
    dest.mkdir(parents=True, exist_ok=True)
    size = archive.stat().st_size
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                unpack(zip_members(opened), dest, limits, size)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as opened:
                unpack(tar_members(opened), dest, limits, size)
        else:
            raise ArchiveRefused("it is neither a tar nor a zip archive")
    except (ArchiveRefused, tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        shutil.rmtree(dest, ignore_errors=True)
        raise SourceError(f"archive {name} refused: {error}") from error


def download_file(url: str, dest: Path, limits: Limits) -> None:
    """Stream a (large) file to `dest`, a temporary path, within the archive deadline."""
    deadline = Deadline(limits.deadline)
    with requests.get(url, stream=True, timeout=min(READ_TIMEOUT, deadline.left())) as response:
        response.raise_for_status()
        total = int(response.headers.get("Content-Length", 0)) or None
        size = 0
        with (
            writing_to(dest.parent),
            open(dest, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True) as bar,
        ):
            for chunk in body_chunks(response, READ_TIMEOUT, deadline):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise UrlFailed("too_large", f"more than max_bytes={limits.max_bytes}")
                out.write(chunk)
                bar.update(len(chunk))


def fetch_archive(location: str, dest: Path, limits: Limits) -> None:
    """Download (when `location` is a URL) and unpack an archive into `dest`."""
    if not is_url(location):
        extract_archive(Path(location), dest, limits, location)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    download = dest.with_name(dest.name + ".download")
    try:
        download_file(location, download, limits)
        extract_archive(download, dest, limits, location)
    except (requests.RequestException, urllib3.exceptions.HTTPError, UrlFailed) as error:
        raise SourceError(f"cannot download archive {location}: {error}") from error
    finally:
        download.unlink(missing_ok=True)
