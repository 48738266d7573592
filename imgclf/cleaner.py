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
import re
import sys
import threading
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import web
from .config import read_config
from .files import TableError, read_csv
from .labels import DROP, LabelsError, label_overrides, read_labels, write_decisions
from .layout import MANIFEST, REVIEW, SPLIT
from .review import KEEP, ReviewError

IMAGE_ID = re.compile(r"[0-9a-f]{16}")
MAX_BODY = 4096
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
                    "probability": (
                        float(review.at[image.id, "probability"]) if reviewed else None
                    ),
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


def make_app(cleaner: Cleaner, hosts: set[str], body_seconds: float):
    """GET /, /api/images and /image/<id>; POST /api/decision. Anything else is refused.

    The guards are web.Guard's: on 127.0.0.1 only requests for this server by name are
    answered, and a decision only from a page of this origin, so another site's page that a
    browser was led to this port (DNS rebinding, a form) can neither read the images nor write
    a label. Only the image files listed in the manifest are served, by id.
    """

    async def page(request: Request) -> Response:
        return HTMLResponse(files("imgclf").joinpath("cleaner.html").read_text())

    async def images(request: Request) -> Response:
        try:
            found = await run_in_threadpool(cleaner.images)
        except TableError as failure:
            return web.error(500, str(failure))
        return JSONResponse(
            {
                "classes": cleaner.classes,
                "labels_file": str(cleaner.labels_path),
                "images": found,
            }
        )

    async def image(request: Request) -> Response:
        image_id = request.path_params["id"]
        path = cleaner.paths.get(image_id) if IMAGE_ID.fullmatch(image_id) else None
        if path is None:
            return web.error(404, f"{image_id} is not in the manifest")
        file = cleaner.folder / path
        return FileResponse(file, media_type=IMAGE_TYPES.get(file.suffix.lower(), ""))

    async def decision(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return web.error(415, "send JSON")
        body = web.read_json_body(await web.read_body(request, MAX_BODY, body_seconds))
        try:
            if not isinstance(body, dict) or set(body) != {"id", "decision"}:
                raise ReviewError('send {"id": ..., "decision": ...}')
            result = await run_in_threadpool(cleaner.decide, str(body["id"]), str(body["decision"]))
        except (ReviewError, LabelsError) as failure:
            return web.error(400, str(failure))
        return JSONResponse(result)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/images", images),
            Route("/image/{id}", image),
            Route("/api/decision", decision, methods=["POST"]),
        ],
        exception_handlers={HTTPException: web.http_error},
    )
    return web.Guard(app, hosts, token=None)


def main(argv: list[str] | None = None, prog: str = "python -m imgclf.cleaner") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="config.yaml", help="the workflow's config")
    parser.add_argument("--directory", default=".", help="the workflow's folder (default: .)")
    parser.add_argument("--port", type=int, default=8765, help="0 for any free port")
    parser.add_argument(
        "--body-seconds", type=float, default=10.0, help="seconds a client has to send a body"
    )
    args = parser.parse_args(argv)
    folder = Path(args.directory)
    try:
        config = read_config(folder / args.config)
        cleaner = Cleaner(folder, list(config["classes"]), config["labels"])
    except (FileNotFoundError, OSError, TableError) as failure:
        parser.exit(1, f"error: {failure}\n")
    try:  # 127.0.0.1 only: the page writes the labels file, and it has no token
        sock, hosts, url = web.listen("127.0.0.1", args.port)
    except OSError as failure:
        parser.exit(1, f"{parser.prog}: cannot listen on port {args.port}: {failure}\n")
    print(f"Label cleaner on {url} (Ctrl-C to stop)", flush=True)
    web.run(make_app(cleaner, hosts, args.body_seconds), sock, max_connections=64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
