"""Files: writing them so that an interrupted job never leaves a half-written one under its
final name, reading the workflow's tables, and listing what a user named; and the faults of
each (a full disk, a damaged file, a second run) as one line that names the file and the fix."""

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from .layout import rule_writing


class FileFault(Exception):
    """A file of the workflow cannot be written or read as it should; the message is one line
    that names the file and what to do, and is all a job prints of it (see logs.py)."""


class WriteFailed(FileFault):
    """The workflow could not write its own files: the job stops, it never counts the failure
    as a bad image or URL, and a rerun after the fix goes on from what was kept."""


class DamagedFile(FileFault):
    """A file that the workflow wrote earlier is missing or cannot be read as what it is."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path} is damaged ({problem}); {how_to_rebuild(path) or 'replace it'}")


def how_to_rebuild(path: str | Path) -> str:
    """The command that rebuilds one of the workflow's results ('' for other files)."""
    rule = rule_writing(str(path))
    return f"rebuild it: snakemake --cores all --forcerun {rule}" if rule else ""


# Errors of the disk, not of the data being written: the same write would fail for any data.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def free_space(folder: Path) -> str:
    """Free space on the filesystem of `folder` (or of its nearest existing parent)."""
    for place in (folder, *folder.absolute().parents):
        try:
            free = shutil.disk_usage(place).free
        except OSError:
            continue
        return f"{free / 2**20:.1f} MB free" if free < 2**30 else f"{free / 2**30:.1f} GB free"
    return "free space unknown"


@contextmanager
def writing_to(folder: str | Path) -> Iterator[None]:
    """Turn a disk error in the block into a WriteFailed naming `folder` and its free space."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        folder = Path(folder)
        raise WriteFailed(
            f"cannot write to {folder}: {error.strerror} ({free_space(folder)}); make room or "
            "fix the disk, then rerun the same command: the work already done is kept"
        ) from error


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
    with writing_to(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        if durable:
            remove_partial_files(path.parent, path.name)
        tmp = new_partial_file(path)
    try:
        with writing_to(path.parent):
            yield tmp
            if durable:
                fsync_path(tmp)
            os.replace(tmp, path)
            if durable:
                fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def new_partial_file(path: Path) -> Path:
    """Create an empty temporary file beside `path`, with the mode that the user's umask gives
    any new file (tempfile.mkstemp's is 0600 whatever the umask: an exported model that a
    colleague could not read)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


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


class RunLock:
    """The lock of a workflow folder: one snakemake run at a time in it.

    Snakemake's own lock looks for other runs' lock files, then writes its own, so two runs
    started within the same moment can both pass it (1 in 10 tries) and then delete each
    other's temporary files. flock is one atomic step, and the kernel releases it when the
    process ends, however it ends: no stale lock to clear after a crash.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.file: BinaryIO | None = None

    def acquire(self) -> None:
        """Hold the lock until this process exits; a RunLockError if another run holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+b")  # noqa: SIM115 (held until the process exits)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().decode(errors="replace").strip() or "another process"
            file.close()
            raise RunLockError(
                f"another snakemake run is working in {Path.cwd()} ({holder}): wait for it "
                "to end, or stop it, then start this one again"
            ) from None
        file.truncate(0)
        file.write(f"process {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        file.flush()
        self.file = file


class RunLockError(RuntimeError):
    """Another run holds the workflow folder's lock."""


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


def read_json(path: str | Path) -> dict:
    """One of the workflow's JSON files; a DamagedFile says how to rebuild one that is not."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise DamagedFile(path, str(error)) from error


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of one of the workflow's .npz files (no pickle), or a DamagedFile."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DamagedFile(path, str(error) or type(error).__name__) from error


class TableError(FileFault, ValueError):
    """A CSV file cannot be read as a table; the message names the file."""


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read one of the workflow's tables with every column as text, empty cells as ''."""
    rebuild = how_to_rebuild(path)  # for a table the workflow wrote; the user fixes theirs

    def problem(what: str, fix: str = "") -> TableError:
        return TableError("; ".join(filter(None, [f"{path} {what}", rebuild or fix])))

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError as error:
        raise problem("is empty: a table needs at least its header line") from error
    except pd.errors.ParserError as error:
        raise problem(f"is not a readable CSV table: {str(error).strip()}") from error
    except UnicodeDecodeError as error:
        raise problem(f"is not UTF-8 text (byte {error.start})", "save it as UTF-8") from error


def files_in(paths: list[str]) -> list[str]:
    """The files named, and those under the folders named (sorted, hidden ones left out).

    Every entry that is not a folder is a file here, FIFOs, devices and broken links too, so
    that the reader gives each a row that says what it is rather than passing over it.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = [file for file in path.rglob("*") if not file.is_dir()]
            hidden = [
                any(part.startswith(".") for part in file.relative_to(path).parts) for file in files
            ]
            found += sorted(str(file) for file, skip in zip(files, hidden, strict=True) if not skip)
        else:
            found.append(str(path))
    return found


class NotRegularFile(OSError):
    """A FIFO, device, socket or link loop where a file was expected."""


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file. A FIFO would block the open until a
    writer came, and a device would never end: both are refused without waiting."""

    def without_waiting(name, flags):
        return os.open(name, flags | os.O_NONBLOCK)

    try:  # open() rather than os.open: the file keeps its path as its name, for errors
        file = open(path, "rb", opener=without_waiting)  # noqa: SIM115 (the caller closes it)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile(f"{path} is not a regular file (a symbolic link loop)") from None
        raise
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise NotRegularFile(f"{path} is not a regular file")
    return file


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
