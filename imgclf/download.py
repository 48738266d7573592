"""download: fetch a URL list into a folder of images named by content, one report row per URL.

The folder is a content-addressed store that outlives the job: a journal records each image as
it lands, so a rerun, or a run after an interruption, fetches only what is still missing.
"""

import hashlib
import ipaddress
import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname

import pandas as pd
import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .files import NotRegularFile, open_regular, writing_to

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 10
ID_LENGTH = 16  # hex digits of SHA-256: 64 bits, no collision in any realistic data set
JOURNAL = "journal.jsonl"
ALLOW_LOCAL = "set download.allow_local: true to fetch local files and services from URL lists"

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
class DownloadSettings:
    """The `download` section of config.yaml; its schema gives the defaults."""

    max_images: int | None  # None: every image of the list
    max_bytes: int
    timeout: float
    deadline: float
    retries: int
    backoff: float
    workers: int
    allow_local: bool


@dataclass
class UrlOutcome:
    """One row of `{cls}.csv`.

    status: ok; duplicate (the same content as an earlier URL of the class, stored once);
    http_error, timeout (a read, or the whole URL past its deadline), not_image, too_large,
    unsupported_scheme, connection_error; invalid_url (a line that is no URL or path);
    blocked (a local file, or an address that is not public, without download.allow_local);
    file_error (a local path that cannot be read, or is no regular file); skipped
    (past the class's max_images).
    """

    url: str
    status: str
    http_code: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    id: str = ""
    path: str = ""
    error: str = ""


COLUMNS = [field.name for field in fields(UrlOutcome)]


class UrlFailed(Exception):
    """A URL gave no image: its status (see UrlOutcome) and why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Fetched:
    """What a worker hands back: an outcome and, for a new image, its temporary file."""

    outcome: UrlOutcome
    part: Path | None = None
    extension: str = ""


class Deadline:
    """The time one URL has: connecting, redirects, retries and the body together."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; past the deadline, the URL is given up as a timeout."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise UrlFailed("timeout", f"no image within the deadline of {self.seconds:g} s")
        return left


def store_stream(chunks: Iterable[bytes], part: Path, max_bytes: int) -> tuple[str, str, int]:
    """Write chunks to `part`, checking magic bytes and size as they come; (id, ext, bytes).

    The error of content that is no image says nothing of the content: it may be a local file
    that report.html must not show.
    """
    chunks = iter(chunks)
    head = b""
    for chunk in chunks:  # gather enough bytes to recognise the format
        head += chunk
        if len(head) >= MAGIC_BYTES:
            break
    extension = image_extension(head)
    if extension is None:
        raise UrlFailed("not_image", "empty" if not head else "starts with no image signature")
    digest = hashlib.sha256()
    size = 0
    with writing_to(part.parent), open(part, "wb") as out:
        for chunk in itertools.chain([head], chunks):
            size += len(chunk)
            if size > max_bytes:
                raise UrlFailed("too_large", f"more than max_bytes={max_bytes}")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()[:ID_LENGTH], extension, size


class PublicOnly:
    """A urllib3 connection that refuses, before sending a byte, a peer that is not public.

    The check is on the address actually connected to, so it holds for every redirect, for a
    host name that resolves to 127.0.0.1 and for spellings such as http://0x7f000001/.
    """

    def _new_conn(self):
        sock = super()._new_conn()
        host = sock.getpeername()[0]
        address = ipaddress.ip_address(host.partition("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            sock.close()
            raise UrlFailed("blocked", f"{host} is not a public address; {ALLOW_LOCAL}")
        return sock


class PublicHTTPConnection(PublicOnly, HTTPConnection):
    pass


class PublicHTTPSConnection(PublicOnly, HTTPSConnection):
    pass


class PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = PublicHTTPConnection


class PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": PublicHTTPPool, "https": PublicHTTPSPool}


_thread_state = threading.local()


def http_session(allow_local: bool) -> requests.Session:
    """One session per worker thread, so each reuses its connections without sharing them.

    Proxies and credentials from the environment are not used: the address check must see
    the server itself, and a scraped URL gets no one's .netrc password.
    """
    sessions = _thread_state.__dict__.setdefault("sessions", {})
    if allow_local not in sessions:
        session = requests.Session()
        session.trust_env = False
        session.headers["User-Agent"] = "imgclf/0.1 (image data set downloader)"
        adapter = HTTPAdapter() if allow_local else PublicOnlyAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        sessions[allow_local] = session
    return sessions[allow_local]


def check_url(url: str) -> None:
    """Refuse a line that is no http(s) URL with a host, before anything is sent."""
    parsed = urlparse(url)  # ValueError for a broken [IPv6] host
    if parsed.scheme not in ("http", "https"):
        raise UrlFailed(
            "unsupported_scheme", f"scheme {parsed.scheme!r} is not http, https or file"
        )
    if not parsed.hostname:
        raise UrlFailed("invalid_url", "no host")
    if parsed.port == 0:  # a port that is no number, or out of range, raises ValueError
        raise UrlFailed("invalid_url", "port 0")
    try:
        parsed.hostname.encode("idna")
    except UnicodeError as error:
        raise UrlFailed("invalid_url", f"host name: {error}") from error


def follow_redirects(
    session: requests.Session, url: str, timeout: float, deadline: Deadline
) -> requests.Response:
    """GET `url` and the redirects it leads to, each checked as the URL was."""
    for _ in range(MAX_REDIRECTS + 1):
        response = session.get(
            url, stream=True, allow_redirects=False, timeout=min(timeout, deadline.left())
        )
        target = session.get_redirect_target(response)
        if target is None:
            return response
        response.close()
        url = urljoin(response.url, target)
        scheme = urlparse(url).scheme
        if scheme not in ("http", "https"):
            raise UrlFailed("unsupported_scheme", f"redirected to a {scheme!r} URL")
        check_url(url)
    raise UrlFailed("http_error", f"more than {MAX_REDIRECTS} redirects")


def open_http(url: str, settings: DownloadSettings, deadline: Deadline) -> requests.Response:
    """The response to `url`, retrying failed connections and 5xx answers with backoff.

    A read that times out is not retried: a server too slow once stays slow. Retry-After is
    not followed: a server cannot stretch a URL's deadline by asking to be tried later.
    """
    session = http_session(settings.allow_local)
    for attempt in range(settings.retries):
        try:
            response = follow_redirects(session, url, settings.timeout, deadline)
            if response.status_code < 500:
                return response
            response.close()
        except requests.exceptions.ConnectionError:
            pass
        pause = settings.backoff * 2 ** (attempt - 1) if attempt else 0.0
        time.sleep(min(pause, deadline.left()))
    return follow_redirects(session, url, settings.timeout, deadline)


def body_chunks(response: requests.Response, timeout: float, deadline: Deadline):
    """The decoded body as it arrives, each read bounded by what is left of the deadline, so a
    server that trickles a byte at a time cannot hold a URL past it."""
    raw = response.raw
    while True:
        left = deadline.left()
        if raw.connection is not None and raw.connection.sock is not None:
            raw.connection.sock.settimeout(min(timeout, left))
        try:
            chunk = raw.read1(CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            deadline.left()  # at the deadline, say so rather than "read timed out"
            raise
        if not chunk:
            return
        yield chunk


def check_response(response: requests.Response, max_bytes: int) -> None:
    if response.status_code >= 400:
        raise UrlFailed("http_error", f"HTTP {response.status_code} {response.reason}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise UrlFailed("too_large", f"Content-Length {length} > max_bytes={max_bytes}")


def read_local(path: Path) -> Iterator[bytes]:
    """A local file's bytes; a FIFO or device is refused, without waiting for a writer."""
    try:
        file = open_regular(path)
    except NotRegularFile as error:
        raise UrlFailed("file_error", str(error)) from error
    with file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def local_path(url: str) -> Path | None:
    """The local file a `file://` URL or a plain path names; None for other schemes."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(url) if parsed.scheme == "" else None


def fetch(url: str, store: Path, settings: DownloadSettings) -> Fetched:
    """Fetch one URL into a temporary file in `store`. A URL's failure is its outcome; a
    WriteFailed (the store's disk is full or failing, whatever the URL) stops the job."""
    outcome = UrlOutcome(url=url, status="ok")
    part = store / f".{threading.get_ident()}-{time.monotonic_ns()}.part"
    started = time.monotonic()
    response = None
    try:
        if any(ord(char) < 32 or ord(char) == 127 for char in url):
            raise UrlFailed("invalid_url", "a control character (such as NUL) in the line")
        path = local_path(url)
        if path is not None:
            if not settings.allow_local:
                raise UrlFailed("blocked", f"a local file; {ALLOW_LOCAL}")
            chunks: Iterable[bytes] = read_local(path)
        else:
            check_url(url)
            deadline = Deadline(settings.deadline)
            response = open_http(url, settings, deadline)
            outcome.http_code = response.status_code
            check_response(response, settings.max_bytes)
            chunks = body_chunks(response, settings.timeout, deadline)
        outcome.id, extension, outcome.bytes = store_stream(chunks, part, settings.max_bytes)
        return Fetched(outcome, part, extension)
    except UrlFailed as rejection:
        outcome.status, outcome.error = rejection.status, str(rejection)
        if rejection.status == "not_image" and response is not None:
            outcome.error += f" (Content-Type {response.headers.get('Content-Type', 'none')})"
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as error:
        outcome.status, outcome.error = "timeout", str(error)
    except (requests.exceptions.InvalidURL, ValueError) as error:
        outcome.status, outcome.error = "invalid_url", str(error)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
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


def end_last_line(journal: Path) -> None:
    """End a line that a full disk or a kill cut short, so the next record starts a line."""
    if journal.exists() and journal.stat().st_size:
        with open(journal, "rb+") as file:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                file.write(b"\n")


def download_urls(urls: list[str], store: str | Path, settings: DownloadSettings) -> pd.DataFrame:
    """Download `urls` into `store`; return one UrlOutcome row per URL, in the order given.

    Results are accepted in URL order whatever order they finish in, so which URL of two with
    the same content counts as the duplicate, and which images fall past `max_images`, does
    not depend on timing.
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    for stale in store.glob(".*.part"):
        stale.unlink()
    done_before = read_journal(store)
    with writing_to(store):
        end_last_line(store / JOURNAL)
    cap = settings.max_images
    kept: set[str] = set()
    outcomes: list[UrlOutcome] = []
    pending: deque[tuple[str, Future | None]] = deque()
    remaining = iter(urls)

    def submit_next(pool: ThreadPoolExecutor) -> None:
        url = next(remaining, None)
        if url is not None:
            future = None if url in done_before else pool.submit(fetch, url, store, settings)
            pending.append((url, future))

    # The journal's last buffered lines are written when it closes: on a full disk, that too
    # is a write that fails, after the one that stopped the loop.
    with (
        writing_to(store),
        open(store / JOURNAL, "a") as journal,
        ThreadPoolExecutor(settings.workers) as pool,
        tqdm(total=len(urls), unit="url", mininterval=2) as progress,
    ):
        for _ in range(2 * settings.workers):
            submit_next(pool)
        while pending:
            url, future = pending.popleft()
            fetched = future.result() if future else cached(done_before[url])
            if cap is not None and len(kept) >= cap:
                discard(fetched)
                outcomes.append(skipped(url, cap))
            else:
                with writing_to(store):
                    outcomes.append(accept(fetched, store, kept, journal))
                submit_next(pool)
            progress.update()
        outcomes += [skipped(url, cap) for url in remaining]
    table = pd.DataFrame([asdict(outcome) for outcome in outcomes], columns=COLUMNS)
    table["http_code"] = table["http_code"].astype("Int64")
    log.info("%s: %s", store, table["status"].value_counts().to_dict())
    left_out = int((table["status"] == "skipped").sum())
    if left_out:
        log.warning(
            "%s: %d of %d URLs left out: the class keeps at most max_images = %d images "
            "(raise it, or set the class's own max_images in config.yaml)",
            store,
            left_out,
            len(table),
            cap,
        )
    return table


def skipped(url: str, cap: int) -> UrlOutcome:
    return UrlOutcome(url=url, status="skipped", error=f"past max_images ({cap} images)")


def cached(record: dict) -> Fetched:
    outcome = UrlOutcome(
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


def accept(fetched: Fetched, store: Path, kept: set[str], journal) -> UrlOutcome:
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
        record = {
            "url": outcome.url,
            "id": outcome.id,
            "file": name,
            "bytes": outcome.bytes,
            "http_code": outcome.http_code,
        }
        journal.write(json.dumps(record) + "\n")
        journal.flush()
    if outcome.id in kept:
        outcome.status = "duplicate"
    kept.add(outcome.id)
    return outcome
