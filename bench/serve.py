"""Benchmark of the served model against the same model offline, in one run.

    python -m bench.serve [--images N] [--size 224] [--in-flight 1 4 16]

Exports a pretrained efficientnet_lite0 (its head untrained: speed does not depend on it) at
`--size`, starts `python -m imgclf.serve` on 127.0.0.1, and sends it the same photos (ants and
bees from ../shared/datasets, else photo-like JPEGs) from a client that keeps 1, 4 and 16
requests in flight and stops after `--images` answers each. It prints images/s, latency
percentiles, errors and the server's mean batch size, beside offline `imgclf.predict` on the
same files (batched throughput, and one image's latency). Targets: at 16 in flight at least
0.8x the offline throughput; at 1 in flight a p95 latency at most 1.3x one offline prediction;
no errors below the queue limit.
"""

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import torch

from imgclf.models import build_model
from imgclf.predict import Predictor

from .common import photo_like, timed, write_export
from .demo_data import REPO

PHOTOS = REPO.parent / "shared/datasets/hymenoptera/val"


def photo_files(count: int, folder: Path) -> list[Path]:
    """`count` photos: the shared ants and bees (repeated if fewer), else generated ones."""
    found = sorted(PHOTOS.rglob("*.jpg")) if PHOTOS.exists() else []
    if not found:
        for seed in range(64):
            found.append(folder / f"{seed}.jpg")
            photo_like(seed, (500, 375)).save(found[-1], quality=90)
    return [found[index % len(found)] for index in range(count)]


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def load(url: str, bodies: list[bytes], in_flight: int) -> tuple[float, list[float], int]:
    """Send every body with `in_flight` requests at a time: (seconds, latencies, errors)."""
    local = threading.local()
    latencies, errors = [], 0

    def send(body: bytes) -> None:
        nonlocal errors
        session = local.__dict__.setdefault("session", requests.Session())
        started = time.perf_counter()
        answer = session.post(url + "/predict", data=body, timeout=60)
        latencies.append(time.perf_counter() - started)
        errors += answer.status_code != 200

    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - started, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = build_model("efficientnet_lite0", 2, pretrained=True).eval()
        write_export(folder, model, ["ants", "bees"], args.size)
        paths = photo_files(args.images, folder)
        bodies = [path.read_bytes() for path in paths]

        predictor = Predictor(folder)
        predictor.predict_files([str(path) for path in paths[:32]])  # warm up
        offline = args.images / timed(lambda: predictor.predict_files(list(map(str, paths))))
        singles = [timed(lambda p=path: predictor.predict(p)) for path in paths]
        one, one_p95 = np.percentile(singles, [50, 95])
        print(
            f"efficientnet_lite0 at {args.size} px, {args.images} photos: offline "
            f"imgclf.predict {offline:.1f} images/s batched; one image at a time p50 "
            f"{one * 1000:.1f} p95 {one_p95 * 1000:.1f} ms"
        )

        server = subprocess.Popen(
            [sys.executable, "-m", "imgclf.serve", str(folder), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().split(" on ")[1].split()[0].rstrip("/")
            load(url, bodies[:16], 4)  # warm up the connections and threads
            for in_flight in args.in_flight:
                before = requests.get(url + "/metrics", timeout=10).text
                seconds, latencies, errors = load(url, bodies, in_flight)
                after = requests.get(url + "/metrics", timeout=10).text
                batches = metric(after, "imgclf_batch_size_count") - metric(
                    before, "imgclf_batch_size_count"
                )
                images = metric(after, "imgclf_batch_size_sum") - metric(
                    before, "imgclf_batch_size_sum"
                )
                p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) * 1000
                rate = args.images / seconds
                print(
                    f"served, {in_flight:2d} in flight: {rate:.1f} images/s "
                    f"({rate / offline:.2f}x offline), latency p50 {p50:.1f} p95 {p95:.1f} "
                    f"p99 {p99:.1f} ms, {errors} errors, mean batch {images / batches:.2f}"
                )
                if in_flight == 1:
                    for name, offline_ms in (("p50", one * 1000), ("p95", one_p95 * 1000)):
                        verdict = "met" if p95 <= 1.3 * offline_ms else "NOT met"
                        print(
                            f"  served p95 / offline {name}: {p95 / offline_ms:.2f}x "
                            f"(target <= 1.3x: {verdict})"
                        )
                if in_flight == 16:
                    verdict = "met" if rate >= 0.8 * offline else "NOT met"
                    print(
                        f"  throughput / offline: {rate / offline:.2f}x (target >= 0.8x: {verdict})"
                    )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
