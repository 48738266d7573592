"""Files: writing them so that an interrupted job never leaves a half-written one under its
final name, reading the workflow's tables, and listing what a user named."""

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


def fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_files(folder: str | Path, name: str = "*") -> None:
    """Delete the temporaries that killed writers of `name` (every file: *) left in `folder`."""
    for stale in Path(folder).glob(f".{name}.*.part"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Durable (the default): the file and then its folder are synced, so after a crash `path`
    is the old file or the whole new one, and temporary files that a killed writer of `path`
    left are removed first: one writer a file is the workflow's rule (and `locked` for the
    labels file). Both cost a scan of the folder or a disk flush per file, which a job that
    writes thousands of files into one folder cannot pay (a scan per file is O(N^2) a run):
    it passes durable=False, and calls remove_partial_files once before and sync_folder once
    after.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if durable:
        remove_partial_files(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def sync_folder(folder: str | Path) -> None:
    """Make the files written into `folder` without syncs durable, with one flush: os.sync
    writes every dirty page (one call, against one fsync per file), then the folder's entries."""
    os.sync()
    fsync_path(folder)


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of `path`, against other processes too.

    The lock is on the folder, since an atomic write replaces the file itself; it is released
    when the block ends or the process dies.
    """
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """An .npz of numeric and fixed-width text arrays, readable with allow_pickle=False."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez(file, **arrays)


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


class TableError(ValueError):
    """A CSV file cannot be read as a table; the message names the file."""


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read one of the workflow's tables with every column as text, empty cells as ''."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError as error:
        raise TableError(f"{path} is empty: a table needs at least its header line") from error
    except pd.errors.ParserError as error:
        raise TableError(f"{path} is not a readable CSV table: {error}".strip()) from error
    except UnicodeDecodeError as error:
        raise TableError(
            f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from error


def files_in(paths: list[str]) -> list[str]:
    """The files named, and those under the folders named (sorted, hidden ones left out)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = [file for file in path.rglob("*") if file.is_file()]
            hidden = [
                any(part.startswith(".") for part in file.relative_to(path).parts) for file in files
            ]
            found += sorted(str(file) for file, skip in zip(files, hidden, strict=True) if not skip)
        else:
            found.append(str(path))
    return found


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
