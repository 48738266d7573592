"""A real HTTP server on 127.0.0.1 for download tests and benchmarks.

Routes are a dict of path -> Route; each request is counted so tests can see retries and
what a rerun fetched again.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    fail_first: int = 0  # answer 500 to this many requests first
    send_length: bool = True  # False: no Content-Length, the body ends when the connection does
    trickle: float = 0.0  # seconds between the body's bytes, sent one at a time


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that time out or give up reset their connections; that is expected


class ImageServer:
    def __init__(self, routes: dict[str, Route] | None = None, latency: float = 0.0):
        self.routes = dict(routes or {})
        self.latency = latency
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}{path}"

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _count(self, path: str) -> int:
        with self._lock:
            self.requests[path] += 1
            return self.requests[path]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections

            def log_message(self, *args):
                pass

            def do_GET(self):
                count = server._count(self.path)
                time.sleep(server.latency)
                route = server.routes.get(self.path, Route(b"not found", 404, "text/plain"))
                time.sleep(route.delay)
                status = 500 if count <= route.fail_first else route.status
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", route.content_type)
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    if route.send_length:
                        self.send_header("Content-Length", str(len(route.body)))
                    else:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    if route.trickle:
                        for index in range(len(route.body)):
                            self.wfile.write(route.body[index : index + 1])
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as a client with a timeout does

        return Handler
