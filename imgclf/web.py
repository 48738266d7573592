"""What the served model and the label cleaner share: one web stack (Starlette on uvicorn) and
one set of guards, so that Host, Origin, token, body limits and headers are checked in one place.

Starlette and uvicorn because they are small, typed and well kept (BSD), run under the
standard ASGI interface, stop gracefully on SIGTERM (the requests in flight finish), and leave
request bodies to the application: nothing here parses multipart, whose parsers have had
repeated denial-of-service CVEs; uploads are raw bytes.
"""

import asyncio
import ipaddress
import json
import secrets
import socket
from collections.abc import Iterable
from urllib.parse import urlparse

import uvicorn
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every answer: not cached, never framed by another page (a click-jacked cleaner could drop
# images), never sniffed into another type than the one declared.
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer: JSON with its reason, never an echo of what was sent."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's HTTPException as the same JSON errors as the rest."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, exc.headers)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def local_names(host: str, port: int) -> set[str]:
    """The Host headers a browser sends to a server on a loopback address."""
    names = {host, "localhost", "127.0.0.1"} if host != "::1" else {"[::1]", "localhost"}
    return {f"{name}:{port}" for name in names}


class Guard:
    """ASGI middleware: answer only requests for this server, from its own pages, with the token.

    - Host must be one of `hosts` (421 otherwise) when given: a server on 127.0.0.1 is then
      out of reach of another site's page that DNS rebinding points at it.
    - A request that changes something (not GET or HEAD) with an Origin must come from a page
      of this server (one of `hosts`, or the Host it was sent to; 403): another site's form
      or script cannot post to it.
    - With a `token`, every path but `open_paths` needs `Authorization: Bearer <token>` (401).
    """

    def __init__(
        self,
        app: ASGIApp,
        hosts: set[str] | None,
        token: str | None,
        open_paths: Iterable[str] = (),
    ):
        self.app, self.hosts, self.token = app, hosts, token
        self.open_paths = set(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        origin = headers.get("origin")
        refusal = None
        if self.hosts is not None and host not in self.hosts:
            refusal = error(421, "this server answers to its own address only")
        elif (
            origin is not None
            and scope["method"] not in ("GET", "HEAD")
            and urlparse(origin).netloc not in (self.hosts or {host})
        ):
            refusal = error(403, "requests that change something come from this page only")
        if refusal is None and self.token is not None and scope["path"] not in self.open_paths:
            given = headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                refusal = error(
                    401, "a token is needed", {"WWW-Authenticate": 'Bearer realm="imgclf"'}
                )

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await (refusal or self.app)(scope, receive, send_guarded)


async def read_body(request: Request, max_bytes: int, seconds: float) -> bytes:
    """The request's body, at most `max_bytes` (413, on the declared length first and then as
    it arrives, for a chunked body), all of it within `seconds` (408): a client that stalls or
    trickles cannot hold a worker."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise HTTPException(413, f"the body is too large: over {max_bytes} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(413, f"the body is too large: over {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"the body did not arrive within {seconds:g} s") from None
    return b"".join(chunks)


def read_json_body(body: bytes) -> object:
    """A JSON body, or a 400 that says why (never echoing it)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise HTTPException(400, "JSON nested too deeply") from None
    except ValueError as failure:
        raise HTTPException(400, f"not JSON: {type(failure).__name__}") from None


def listen(
    host: str, port: int, allowed_hosts: list[str] | None = None
) -> tuple[socket.socket, set[str] | None, str]:
    """A listening socket, the Host headers to answer (None: any) and the server's URL; an
    OSError when the address cannot be had."""
    sock = bind(host, port)
    port = sock.getsockname()[1]
    hosts = set(allowed_hosts) if allowed_hosts else None
    if hosts is None and is_loopback(host):
        hosts = local_names(host, port)
    shown = f"[{host}]" if ":" in host else host
    return sock, hosts, f"http://{shown}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound before the server runs so
    that its address can be printed, and a port in use is an error before the model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle off only on sockets that say they are TCP, and
    # with it on, each answer on a kept-alive connection waited 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def run(app: ASGIApp, sock: socket.socket, max_connections: int) -> None:
    """Serve `app` on `sock` until SIGTERM or Ctrl-C, which let the requests in flight finish.

    Past `max_connections` at once, uvicorn answers 503 at once: each connection may hold a
    body in memory, so their number is what bounds the server's memory.
    """
    config = uvicorn.Config(
        app,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # a client's X-Forwarded-For is not believed
        limit_concurrency=max_connections,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=5,
    )
    uvicorn.Server(config).run(sockets=[sock])
