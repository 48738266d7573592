"""A label cleaner in the browser: fastai's ImageCleaner, outside Jupyter.

    python -m imgclf.cleaner [--config config.yaml] [--port 8765]

serves a page on 127.0.0.1 with the workflow's images, the review queue first (the audit's
doubted labels and near-duplicates, each with a suggestion that `a` accepts, then the other
images least likely to be labelled right, outliers among them). Each decision (keep, relabel,
drop) is written at once to the labels file that `split` reads, checked as `python -m
imgclf.review` checks it; then `snakemake --cores 4` reruns split and what follows. The server
opens only the image files listed in the manifest, by id.
"""

import argparse
import contextlib
import json
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

from .config import read_config
from .files import TableError, read_csv
from .labels import DROP, LabelsError, label_overrides, read_labels, write_decisions
from .layout import MANIFEST, REVIEW, SPLIT
from .review import KEEP, ReviewError

IMAGE_ID = re.compile(r"^/image/([0-9a-f]{16})$")
MAX_BODY = 4096
REQUEST_TIMEOUT = 10  # seconds a client may take to send a request it announced
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class Cleaner:
    """The workflow's images and the labels file, for the page; decisions are serialised."""

    def __init__(self, folder: Path, classes: list[str], labels_path: str):
        self.folder, self.classes = folder, classes
        self.labels_path = folder / labels_path
        for needed in (MANIFEST, SPLIT, REVIEW):
            if not (folder / needed).is_file():
                raise FileNotFoundError(
                    f"{folder / needed} is missing: run `snakemake --cores 4` first"
                )
        self.manifest = read_csv(folder / MANIFEST)
        self.paths = dict(zip(self.manifest["id"], self.manifest["path"], strict=True))
        self.lock = threading.Lock()

    def images(self) -> list[dict]:
        """Every image of the manifest, the review queue's first, in its order."""
        review = read_csv(self.folder / REVIEW).set_index("id")
        split = read_csv(self.folder / SPLIT).set_index("id")
        labels = label_overrides(read_labels(self.labels_path))
        order = {image_id: rank for rank, image_id in enumerate(review.index)}
        rows = []
        for image in self.manifest.itertuples():
            reviewed = image.id in review.index
            decision = labels.get(image.id)
            rows.append(
                {
                    "id": image.id,
                    "original": image.label,
                    "label": split["label"].get(image.id, DROP),
                    "set": {"True": "valid", "False": "train"}.get(
                        split["is_valid"].get(image.id, ""), "dropped"
                    ),
                    "issue": review.at[image.id, "issue"] if reviewed else "",
                    "suggested": review.at[image.id, "suggested"] if reviewed else "",
                    "predicted": review.at[image.id, "predicted"] if reviewed else "",
                    "loss": float(review.at[image.id, "loss"]) if reviewed else None,
                    "decision": "" if decision is None else decision or DROP,
                    "rank": order.get(image.id, len(order)),
                }
            )
        return sorted(rows, key=lambda row: (row["rank"], row["id"]))

    def decide(self, image_id: str, decision: str) -> dict:
        """Record one decision: a class, drop, or keep (back to the image's original label)."""
        if image_id not in self.paths:
            raise ReviewError(f"{image_id!r} is not an image of the manifest")
        if decision not in [*self.classes, DROP, KEEP]:
            raise ReviewError(
                f"a decision is a class ({', '.join(self.classes)}), '{DROP}' or '{KEEP}'"
            )
        original = self.manifest.loc[self.manifest["id"] == image_id, "label"].iloc[0]
        label = original if decision == KEEP else decision
        with self.lock:
            write_decisions(self.labels_path, self.manifest, {image_id: label}, self.classes)
        return {"id": image_id, "decision": decision, "label": label}


class Handler(BaseHTTPRequestHandler):
    """GET /, /api/images and /image/<id>; POST /api/decision. Anything else is refused.

    Only requests for this server by name (127.0.0.1:PORT or localhost:PORT) are answered, and
    a decision only from a page of those origins: another site's page that a browser was led
    to this port (DNS rebinding, a form) can neither read the images nor write a label.
    """

    cleaner: Cleaner
    server_version = "imgclf-cleaner"
    timeout = REQUEST_TIMEOUT

    def hosts(self) -> set[str]:
        port = self.server.server_port
        return {f"127.0.0.1:{port}", f"localhost:{port}"}

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.headers.get("Host") not in self.hosts():
            self.send_json(HTTPStatus.MISDIRECTED_REQUEST, {"error": "unexpected Host"})
            return False
        return True

    def do_GET(self) -> None:
        if self.path == "/":
            page = files("imgclf").joinpath("cleaner.html").read_bytes()
            self.send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        elif self.path == "/api/images":
            try:
                images = self.cleaner.images()
            except TableError as error:
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(error)})
                return
            state = {
                "classes": self.cleaner.classes,
                "labels_file": str(self.cleaner.labels_path),
                "images": images,
            }
            self.send_json(HTTPStatus.OK, state)
        elif match := IMAGE_ID.match(self.path):
            self.send_image(match.group(1))
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/api/decision":
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{host}" for host in self.hosts()}:
            self.send_json(HTTPStatus.FORBIDDEN, {"error": "decisions come from this page only"})
            return
        if self.headers.get_content_type() != "application/json":
            self.send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send JSON"})
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True  # where its body ends is unknown
            self.send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "a decimal Content-Length"})
            return
        if int(length) > MAX_BODY:
            self.close_connection = True
            self.send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
            return
        try:
            data = self.rfile.read(int(length))
        except TimeoutError:
            self.close_connection = True
            self.send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": "the body did not arrive"})
            return
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or set(body) != {"id", "decision"}:
                raise ReviewError('send {"id": ..., "decision": ...}')
            result = self.cleaner.decide(str(body["id"]), str(body["decision"]))
        except RecursionError:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": "JSON nested too deeply"})
            return
        except (ValueError, ReviewError, LabelsError) as error:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        self.send_json(HTTPStatus.OK, result)

    def refuse(self) -> None:
        self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only GET and POST"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = refuse

    def send_image(self, image_id: str) -> None:
        path = self.cleaner.paths.get(image_id)
        if path is None:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"{image_id} is not in the manifest"})
            return
        file = self.cleaner.folder / path
        self.send(HTTPStatus.OK, file.read_bytes(), IMAGE_TYPES.get(file.suffix.lower(), ""))

    def send_json(self, status: HTTPStatus, payload) -> None:
        self.send(status, json.dumps(payload).encode(), "application/json")

    def send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        # One key drops an image: no other page may frame this one and trick the keys out.
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        """Only refusals: a line per image shown would bury the address to open."""
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)


def make_server(folder: Path, config: dict, port: int = 0) -> ThreadingHTTPServer:
    """The cleaner's server on 127.0.0.1 (port 0: any free one); serve_forever() runs it."""
    handler = type("BoundHandler", (Handler,), {})
    handler.cleaner = Cleaner(folder, list(config["classes"]), config["labels"])
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m imgclf.cleaner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="config.yaml", help="the workflow's config")
    parser.add_argument("--directory", default=".", help="the workflow's folder (default: .)")
    parser.add_argument("--port", type=int, default=8765, help="0 for any free port")
    args = parser.parse_args(argv)
    folder = Path(args.directory)
    try:
        server = make_server(folder, read_config(folder / args.config), args.port)
    except (FileNotFoundError, OSError, TableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Label cleaner on http://127.0.0.1:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one stops it
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
