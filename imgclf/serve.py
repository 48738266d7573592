"""Serve an exported model: a page to try it, an HTTP API, and the Open Inference Protocol (v2).

    python -m imgclf.serve results/export [--host 127.0.0.1] [--port 8000]

loads the model, warms it up, then answers:
  GET  /                       a page: pick, drop or paste an image; its class and every
                               class's probability
  POST /predict                the raw bytes of one image (no multipart) -> JSON: label, index,
                               probability, probabilities (as imgclf.predict), model
  GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready
  POST /v2/models/NAME/infer   the tensors model.json declares (KServe and Triton clients)
  GET  /metrics                Prometheus: requests by status, latency, queue wait, batch size

On 127.0.0.1 (the default) it answers only requests for its own address. On any other address
it needs --token-file (clients send `Authorization: Bearer <token>`) or an explicit --no-auth.
SIGTERM or Ctrl-C stops it once the requests in flight are answered.
"""

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import web
from .files import FileFault
from .predict import IMAGE_FORMATS, Predictor, TooManyPixels

OPEN_PATHS = ("/", "/v2/health/live", "/v2/health/ready")  # a page and probes need no token


@dataclass
class ServeSettings:
    """The server's limits and batching; each is a command-line option."""

    max_bytes: int = 20 * 2**20  # an upload; a v2 request of one 224-px image is 0.6 MB
    body_seconds: float = 10.0  # to send a whole body
    max_batch: int = 16  # images run together
    max_wait_ms: float = 0.0  # for more images to join a batch before it runs
    queue: int = 64  # requests admitted at once (reading, decoding, waiting, running)
    decode_threads: int = 2
    threads: int = 0  # ONNX Runtime's threads; 0: one per core


class Busy(Exception):
    """The queue is full: the client should retry later (503)."""


class Batcher:
    """One worker owns the ONNX Runtime session and runs the images that wait as one batch.

    A batch is what has arrived while the previous one ran (and, with `max_wait`, a moment
    more), up to `max_batch` images: under load the batches grow by themselves, and a lone
    request does not wait for company it will not get.
    """

    def __init__(self, predictor: Predictor, settings: ServeSettings, metrics: "Metrics"):
        self.predictor, self.settings, self.metrics = predictor, settings, metrics
        self.waiting: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self.arrived = asyncio.Event()
        self.runner = ThreadPoolExecutor(1, thread_name_prefix="onnx")

    async def run(self, pixels: np.ndarray) -> np.ndarray:
        """The probabilities of a (n, 3, size, size) uint8 array of images."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((pixels, future, time.perf_counter()))
        self.arrived.set()
        return await future

    def waiting_images(self) -> int:
        return sum(len(pixels) for pixels, _, _ in self.waiting)

    async def next_batch(self) -> list[tuple[np.ndarray, asyncio.Future, float]]:
        """The requests of the next batch, in their order: what waits, up to max_batch images,
        once something waits and max_wait has passed or the batch is full."""
        loop = asyncio.get_running_loop()
        while not self.waiting:
            self.arrived.clear()
            await self.arrived.wait()
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while self.waiting_images() < self.settings.max_batch and loop.time() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), deadline - loop.time())
        batch = [self.waiting.popleft()]
        size = len(batch[0][0])
        while self.waiting and size + len(self.waiting[0][0]) <= self.settings.max_batch:
            batch.append(self.waiting.popleft())
            size += len(batch[-1][0])
        return batch

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            started = time.perf_counter()
            for _, _, queued in batch:
                self.metrics.queue_wait.observe(started - queued)
            images = np.concatenate([pixels for pixels, _, _ in batch])
            self.metrics.batch_size.observe(len(images))
            try:
                probabilities = await loop.run_in_executor(
                    self.runner, self.predictor.session.run, None, {self.input: images}
                )
            except Exception as failure:  # noqa: BLE001 (each waiting request gets it)
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            start = 0
            for pixels, future, _ in batch:
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(probabilities[0][start : start + len(pixels)])
                start += len(pixels)

    @property
    def input(self) -> str:
        return self.predictor.meta["input"]["name"]


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imgclf_requests", "Requests answered", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "imgclf_request_seconds", "Time to answer a request", ["path"], registry=self.registry
        )
        self.queue_wait = Histogram(
            "imgclf_queue_wait_seconds",
            "Time an image waited for the model",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.batch_size = Histogram(
            "imgclf_batch_size",
            "Images run together",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )


class Measured:
    """ASGI middleware: count every answer by route and status, and time it."""

    def __init__(self, app, metrics: Metrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    def label(self, path: str) -> str:
        """The route a path took, so that clients cannot make a label per URL."""
        parts = path.split("/")
        if parts[1:3] == ["v2", "models"] and len(parts) in (4, 5):
            path = "/".join(["/v2/models/{name}", *parts[4:]])
        return path if path in self.paths else "other"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = self.label(scope["path"])
        started = time.perf_counter()
        status = 500

        async def send_counted(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


class Model:
    """The exported model as served: its predictor, name, version, batcher and queue."""

    def __init__(self, folder: Path, settings: ServeSettings, name: str, metrics: Metrics):
        # Not spinning: its threads would take the cores from the decoding of the next
        # requests (bench.serve, 16 in flight: 69 images/s against 61 spinning).
        self.predictor = Predictor(folder, settings.threads, spinning=False)
        self.settings, self.name = settings, name
        model_file = folder / self.predictor.meta["file"]
        self.version = hashlib.sha256(model_file.read_bytes()).hexdigest()[:12]
        self.batcher = Batcher(self.predictor, settings, metrics)
        self.decoders = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self.admitted = 0
        self.ready = False

    @property
    def size(self) -> int:
        return self.predictor.meta["image_size"]

    def warm_up(self) -> None:
        """Run a batch of each size once: ONNX Runtime plans its memory on the first runs."""
        for count in sorted({1, self.settings.max_batch}):
            self.predictor.probabilities([np.zeros((3, self.size, self.size), np.uint8)] * count)

    @contextlib.contextmanager
    def admission(self):
        """A place among the `queue` requests the server holds at once, or Busy."""
        if self.admitted >= self.settings.queue:
            raise Busy
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def pixels(self, body: bytes) -> np.ndarray:
        """One image's model input, decoded on the decoding threads; 415 or 422 if it is
        not an image, or has more pixels than training allowed."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self.decoders, self.predictor.image_pixels, io.BytesIO(body)
            )
        except (TooManyPixels, Image.DecompressionBombError) as refused:
            raise HTTPException(422, str(refused)) from None
        except UnidentifiedImageError:
            formats = ", ".join(IMAGE_FORMATS)
            raise HTTPException(415, f"not an image in a format read here ({formats})") from None
        except (OSError, ValueError, SyntaxError):
            raise HTTPException(415, "the image cannot be decoded (cut short or damaged)") from None

    def metadata(self) -> dict:
        """The model's Open Inference Protocol metadata."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [
                {
                    "name": self.predictor.meta["input"]["name"],
                    "datatype": "UINT8",
                    "shape": [-1, 3, self.size, self.size],
                }
            ],
            "outputs": [
                {
                    "name": self.predictor.meta["output"]["name"],
                    "datatype": "FP32",
                    "shape": [-1, len(self.predictor.classes)],
                }
            ],
        }


def make_app(
    model: Model, metrics: Metrics, hosts: set[str] | None, token: str | None
) -> Starlette:
    settings = model.settings

    def admitted(handler):
        async def answer(request: Request) -> Response:
            try:
                with model.admission():
                    return await handler(request)
            except Busy:
                return web.error(503, "the server is busy; retry", {"Retry-After": "1"})

        return answer

    def named(request: Request) -> None:
        if request.path_params["name"] != model.name:
            raise HTTPException(404, f"no model of that name here; this one is {model.name}")

    async def page(request: Request) -> Response:
        about = {"name": model.name, "version": model.version, "classes": model.predictor.classes}
        # JSON inside a <script>: "<" escaped, so no value can end the script early.
        data = json.dumps(about).replace("<", "\\u003c")
        html = files("imgclf").joinpath("serve.html").read_text().replace("{{MODEL}}", data)
        return HTMLResponse(html)

    async def predict(request: Request) -> Response:
        body = await web.read_body(request, settings.max_bytes, settings.body_seconds)
        pixels = await model.pixels(body)
        prediction = model.predictor.as_prediction((await model.batcher.run(pixels[None]))[0])
        return JSONResponse(
            {
                "label": prediction.label,
                "index": prediction.index,
                "probability": prediction.probabilities[prediction.label],
                "probabilities": prediction.probabilities,
                "model": {"name": model.name, "version": model.version},
            }
        )

    async def infer(request: Request) -> Response:
        named(request)
        body = await web.read_body(request, settings.max_bytes, settings.body_seconds)
        images, request_id = v2_images(web.read_json_body(body), model)
        probabilities = await model.batcher.run(images)
        answer = {
            "model_name": model.name,
            "model_version": model.version,
            "outputs": [
                {
                    "name": model.predictor.meta["output"]["name"],
                    "datatype": "FP32",
                    "shape": list(probabilities.shape),
                    "data": probabilities.ravel().tolist(),
                }
            ],
        }
        return JSONResponse({**answer, **({"id": request_id} if request_id else {})})

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "imgclf", "version": version("imgclf"), "extensions": []})

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": model.ready}, status_code=200 if model.ready else 503)

    async def model_metadata(request: Request) -> Response:
        named(request)
        return JSONResponse(model.metadata())

    async def model_ready(request: Request) -> Response:
        named(request)
        return JSONResponse({"name": model.name, "ready": model.ready})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(model.batcher.work())
        model.ready = True
        yield
        worker.cancel()

    routes = [
        Route("/", page),
        Route("/predict", admitted(predict), methods=["POST"]),
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", admitted(infer), methods=["POST"]),
        Route("/metrics", prometheus),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: web.http_error},
    )
    guarded = web.Guard(app, hosts, token, OPEN_PATHS)
    return Measured(guarded, metrics, {route.path for route in routes})  # refusals counted too


def v2_images(request: object, model: Model) -> tuple[np.ndarray, str | None]:
    """The images of an inference request, checked against the model's declared input (400)."""
    expected = model.metadata()["inputs"][0]
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise HTTPException(400, 'send {"inputs": [{"name", "shape", "datatype", "data"}]}')
    if len(request["inputs"]) != 1 or not isinstance(request["inputs"][0], dict):
        raise HTTPException(400, f"send one input, {expected['name']}")
    tensor = request["inputs"][0]
    if tensor.get("name") != expected["name"] or tensor.get("datatype") != "UINT8":
        raise HTTPException(400, f"the input is {expected['name']}, datatype UINT8")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or shape[1:] != expected["shape"][1:]
        or not isinstance(shape[0], int)
        or not 1 <= shape[0] <= model.settings.max_batch
    ):
        raise HTTPException(
            400,
            f"shape is [n, 3, {model.size}, {model.size}], n from 1 to {model.settings.max_batch}",
        )
    try:
        data = np.asarray(tensor.get("data"), dtype=np.int64).reshape(shape)
    except (TypeError, ValueError):
        raise HTTPException(400, "data holds shape's number of integers") from None
    if data.min() < 0 or data.max() > 255:
        raise HTTPException(400, "data holds integers from 0 to 255")
    request_id = request.get("id")
    return data.astype(np.uint8), str(request_id) if request_id is not None else None


def add_address_options(parser: argparse.ArgumentParser, port: int) -> None:
    """--host, --port, and who may come in: --token-file, --no-auth, --allowed-host."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help="0 for any free port")
    access = parser.add_mutually_exclusive_group()
    access.add_argument(
        "--token-file", metavar="FILE", help="a file holding the token clients must send"
    )
    access.add_argument("--no-auth", action="store_true", help="no token, on any address")
    parser.add_argument(
        "--allowed-host",
        action="append",
        metavar="HOST:PORT",
        help="a Host header to answer (host:port; repeat it); default on 127.0.0.1: its own",
    )


def check_access(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The token clients must send (None: none), or an error for a server that would let
    other machines in without one and without an explicit --no-auth."""
    if not web.is_loopback(args.host) and not args.token_file and not args.no_auth:
        parser.error(
            f"--host {args.host} lets other machines in: give --token-file FILE (clients send "
            "'Authorization: Bearer TOKEN') or, to serve anyone, --no-auth"
        )
    if not args.token_file:
        return None
    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as failure:
        parser.exit(1, f"{parser.prog}: {failure}\n")
    if len(token) < 16:
        parser.exit(1, f"{parser.prog}: the token in {args.token_file} is under 16 characters\n")
    return token


def main(argv: list[str] | None = None, prog: str = "python -m imgclf.serve") -> int:
    defaults = ServeSettings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="the exported model's folder (results/export)")
    add_address_options(parser, port=8000)
    parser.add_argument("--name", default="imgclf", help="the model's name in the v2 API")
    for field, help_text in (
        ("max_bytes", "largest upload, bytes"),
        ("body_seconds", "seconds a client has to send a body"),
        ("max_batch", "images run together"),
        ("max_wait_ms", "ms a batch waits for more images"),
        ("queue", "requests held at once; past it, 503"),
        ("decode_threads", "threads decoding images"),
        ("threads", "ONNX Runtime threads (0: one per core)"),
    ):
        value = getattr(defaults, field)
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            type=type(value),
            default=value,
            metavar="N",
            help=f"{help_text} (default {value:g})",
        )
    args = parser.parse_args(argv)
    settings = ServeSettings(
        **{field: getattr(args, field) for field in ServeSettings.__dataclass_fields__}
    )
    token = check_access(parser, args)
    if not (Path(args.model) / "model.json").is_file():
        parser.error(f"{args.model} has no model.json: give the folder that export wrote")
    metrics = Metrics()
    try:
        model = Model(Path(args.model), settings, args.name, metrics)
    except (FileFault, OSError, KeyError) as failure:
        parser.exit(1, f"{parser.prog}: {args.model}: {failure}\n")
    model.warm_up()
    try:
        sock, hosts, url = web.listen(args.host, args.port, args.allowed_host)
    except OSError as failure:
        parser.exit(1, f"{parser.prog}: cannot listen on {args.host}:{args.port}: {failure}\n")
    print(f"Serving {args.model} on {url} (Ctrl-C to stop)", flush=True)
    app = make_app(model, metrics, hosts, token)
    web.run(app, sock, max_connections=settings.queue + 16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
