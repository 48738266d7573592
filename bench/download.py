"""Benchmark of `download`: URLs on a loopback server with added latency per request.

    python -m bench.download [--urls 500] [--latency 0.15] [--repeats 3]

Prints images/s of imgclf's download beside a plain sequential `requests` loop over the
same URLs, and their ratio (target: at least 20x).
"""

import argparse
import multiprocessing
import tempfile
from pathlib import Path

import requests
import yaml

from imgclf.download import DownloadSettings, download_urls
from tests import images
from tests.http_server import ImageServer, Route

from .common import report, timed

REPO = Path(__file__).resolve().parents[1]


def sequential(urls: list[str], dest: Path) -> None:
    for index, url in enumerate(urls):
        (dest / f"{index}.jpg").write_bytes(requests.get(url, timeout=10).content)


def serve(count: int, latency: float, ports: multiprocessing.Queue, stop) -> None:
    """Serve `count` JPEGs from another process, so the server does not compete with the
    client being measured for the interpreter, as a real remote server would not."""
    routes = {f"/{i}.jpg": Route(images.jpeg(i, size=(160, 120))) for i in range(count)}
    with ImageServer(routes, latency=latency) as server:
        ports.put(server.url(""))
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = yaml.safe_load((REPO / "config.yaml").read_text())["download"]
    settings = DownloadSettings(**{**config, "allow_local": True})  # the server is on 127.0.0.1
    print(f"{args.urls} URLs, {args.latency * 1000:.0f} ms latency, {settings.workers} workers")
    ports, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.urls, args.latency, ports, stop))
    server.start()
    base_url = ports.get(timeout=60)
    urls = [f"{base_url}/{i}.jpg" for i in range(args.urls)]
    ours, baseline = [], []
    try:
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as base:
                ours.append(timed(lambda: download_urls(urls, Path(ours_dir), settings)))
                baseline.append(timed(lambda: sequential(urls, Path(base))))
    finally:
        stop.set()
        server.join()
    report("download", ours, baseline, args.urls, target=20)


if __name__ == "__main__":
    main()
