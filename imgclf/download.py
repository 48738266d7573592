"""download: fetch a URL list into a folder of images named by content, one report row per URL.

The folder is a content-addressed store that outlives the job: a journal records each image as
it lands, so a rerun, or a run after an interruption, fetches only what is still missing.
"""

import hashlib
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
ID_LENGTH = 16  # hex digits of SHA-256: 64 bits, no collision in any realistic data set
JOURNAL = "journal.jsonl"

# Signatures at the start of a file; the extension names the stored file.
MAGIC = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)
MAGIC_BYTES = 12


def image_extension(head: bytes) -> str | None:
    """The file extension for an image format recognised by its first bytes, else None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in MAGIC if head.startswith(magic)), None)


@dataclass
class Settings:
    """The `download` section of config.yaml; its schema gives the defaults."""

    max_images: int
    max_bytes: int
    timeout: float
    retries: int
    backoff: float
    workers: int


@dataclass
class Outcome:
    """One row of `{cls}.csv`.

    status: ok; duplicate (the same content as an earlier URL of the class, stored once);
    http_error, timeout, not_image, too_large, unsupported_scheme, connection_error;
    file_error (a local path that cannot be read); skipped (max_images was reached).
    """

    url: str
    status: str
    http_code: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    id: str = ""
    path: str = ""
    error: str = ""


COLUMNS = [field.name for field in fields(Outcome)]


class Rejected(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Fetched:
    """What a worker hands back: an outcome and, for a new image, its temporary file."""

    outcome: Outcome
    part: Path | None = None
    extension: str = ""


def store_stream(chunks: Iterable[bytes], part: Path, max_bytes: int) -> tuple[str, str, int]:
    """Write chunks to `part`, checking magic bytes and size as they come; (id, ext, bytes)."""
    chunks = iter(chunks)
    head = b""
    for chunk in chunks:  # gather enough bytes to recognise the format
        head += chunk
        if len(head) >= MAGIC_BYTES:
            break
    extension = image_extension(head)
    if extension is None:
        raise Rejected("not_image", f"content starts with {head[:MAGIC_BYTES]!r}")
    digest = hashlib.sha256()
    size = 0
    with open(part, "wb") as out:
        for chunk in itertools.chain([head], chunks):
            size += len(chunk)
            if size > max_bytes:
                raise Rejected("too_large", f"more than max_bytes={max_bytes}")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()[:ID_LENGTH], extension, size


_thread_state = threading.local()


def http_session(settings: Settings) -> requests.Session:
    """One session per worker thread, so each reuses its connections without sharing them."""
    session = getattr(_thread_state, "session", None)
    if session is None:
        retry = Retry(
            total=settings.retries,
            read=False,  # a server too slow once stays slow: no retry on read timeouts
            status_forcelist=range(500, 600),
            backoff_factor=settings.backoff,
            raise_on_status=False,
            allowed_methods=["GET"],
        )
        session = requests.Session()
        session.headers["User-Agent"] = "imgclf/0.1 (image data set downloader)"
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _thread_state.session = session
    return session


def check_response(response: requests.Response, max_bytes: int) -> None:
    if response.status_code >= 400:
        raise Rejected("http_error", f"HTTP {response.status_code} {response.reason}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise Rejected("too_large", f"Content-Length {length} > max_bytes={max_bytes}")


def read_local(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def local_path(url: str) -> Path | None:
    """The local file a `file://` URL or a plain path names; None for other schemes."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(url) if parsed.scheme == "" else None


def fetch(url: str, store: Path, settings: Settings) -> Fetched:
    """Fetch one URL into a temporary file in `store`. Never raises: failures are outcomes."""
    outcome = Outcome(url=url, status="ok")
    part = store / f".{threading.get_ident()}-{time.monotonic_ns()}.part"
    started = time.monotonic()
    response = None
    try:
        path = local_path(url)
        scheme = urlparse(url).scheme
        if path is not None:
            chunks: Iterable[bytes] = read_local(path)
        elif scheme in ("http", "https"):
            response = http_session(settings).get(url, stream=True, timeout=settings.timeout)
            outcome.http_code = response.status_code
            check_response(response, settings.max_bytes)
            chunks = response.iter_content(CHUNK_BYTES)
        else:
            raise Rejected("unsupported_scheme", f"scheme {scheme!r} is not http, https or file")
        outcome.id, extension, outcome.bytes = store_stream(chunks, part, settings.max_bytes)
        return Fetched(outcome, part, extension)
    except Rejected as rejection:
        outcome.status, outcome.error = rejection.status, str(rejection)
    except requests.exceptions.InvalidSchema as error:
        outcome.status, outcome.error = "unsupported_scheme", str(error)
    except requests.exceptions.Timeout as error:
        outcome.status, outcome.error = "timeout", str(error)
    except requests.RequestException as error:
        outcome.status, outcome.error = "connection_error", str(error)
    except OSError as error:
        outcome.status, outcome.error = "file_error", str(error)
    finally:
        outcome.seconds = round(time.monotonic() - started, 3)
        if response is not None:
            response.close()
    part.unlink(missing_ok=True)
    return Fetched(outcome)


def read_journal(store: Path) -> dict[str, dict]:
    """url -> record of each image fetched earlier whose file is still in the store."""
    journal = store / JOURNAL
    if not journal.exists():
        return {}
    records = {}
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of an interrupted run
            continue
        if (store / record["file"]).exists():
            records[record["url"]] = record
    return records


def download_urls(urls: list[str], store: str | Path, settings: Settings) -> pd.DataFrame:
    """Download `urls` into `store`; return one Outcome row per URL, in the order given.

    Results are accepted in URL order whatever order they finish in, so which URL of two with
    the same content counts as the duplicate, and which images fall past `max_images`, does
    not depend on timing.
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    for stale in store.glob(".*.part"):
        stale.unlink()
    done_before = read_journal(store)
    kept: set[str] = set()
    outcomes: list[Outcome] = []
    pending: deque[tuple[str, Future | None]] = deque()
    remaining = iter(urls)

    def submit_next(pool: ThreadPoolExecutor) -> None:
        url = next(remaining, None)
        if url is not None:
            future = None if url in done_before else pool.submit(fetch, url, store, settings)
            pending.append((url, future))

    with (
        ThreadPoolExecutor(settings.workers) as pool,
        open(store / JOURNAL, "a") as journal,
        tqdm(total=len(urls), unit="url", mininterval=2) as progress,
    ):
        for _ in range(2 * settings.workers):
            submit_next(pool)
        while pending:
            url, future = pending.popleft()
            fetched = future.result() if future else cached(done_before[url])
            if len(kept) >= settings.max_images:
                discard(fetched)
                outcomes.append(Outcome(url=url, status="skipped", error="max_images reached"))
            else:
                outcomes.append(accept(fetched, store, kept, journal))
                submit_next(pool)
            progress.update()
        for url in remaining:
            outcomes.append(Outcome(url=url, status="skipped", error="max_images reached"))
    table = pd.DataFrame([asdict(outcome) for outcome in outcomes], columns=COLUMNS)
    table["http_code"] = table["http_code"].astype("Int64")
    log.info("%s: %s", store, table["status"].value_counts().to_dict())
    return table


def cached(record: dict) -> Fetched:
    outcome = Outcome(
        url=record["url"],
        status="ok",
        http_code=record.get("http_code"),
        bytes=record["bytes"],
        id=record["id"],
    )
    return Fetched(outcome, extension=Path(record["file"]).suffix)


def discard(fetched: Fetched) -> None:
    if fetched.part is not None:
        fetched.part.unlink(missing_ok=True)


def accept(fetched: Fetched, store: Path, kept: set[str], journal) -> Outcome:
    """Move a new image to its final name, or mark it a duplicate of one the class has."""
    outcome = fetched.outcome
    if outcome.status != "ok":
        return outcome
    name = outcome.id + fetched.extension
    outcome.path = str(store / name)
    if fetched.part is not None:  # fetched in this run, not known from the journal
        if outcome.id in kept:
            discard(fetched)
        else:
            fetched.part.replace(store / name)
        record = {"url": outcome.url, "id": outcome.id, "file": name,
                  "bytes": outcome.bytes, "http_code": outcome.http_code}  # fmt: skip
        journal.write(json.dumps(record) + "\n")
        journal.flush()
    if outcome.id in kept:
        outcome.status = "duplicate"
    kept.add(outcome.id)
    return outcome
