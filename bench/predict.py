"""Benchmark of prediction with the exported model at the demo's settings (config.yaml).

    python -m bench.predict [--repeats 5] [--threads 2] [--size 64]

Prints the exported ONNX model's batched throughput (images/s, batches of 64) and per-image
latency beside the same model in torch, in eval mode, on the same images already in memory,
and their ratio (target: batched throughput at least 1.0x torch's).
"""

import argparse
import os
import statistics
import tempfile
from functools import partial
from pathlib import Path

import torch
import yaml

from imgclf.data import Collate
from imgclf.models import build_model
from imgclf.predict import Predictor

from .common import report, timed, write_export
from .demo_data import REPO

BATCH = 64
IMAGES = 512
LATENCY_IMAGES = 50


def main() -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=config["model"]["image_size"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch, classes = config["model"]["arch"], list(config["classes"])
    model = build_model(arch, len(classes), pretrained=True).eval()
    images = torch.randint(0, 256, (IMAGES, 3, args.size, args.size), dtype=torch.uint8)
    batches = [images[start : start + BATCH] for start in range(0, IMAGES, BATCH)]
    collate = Collate()

    @torch.no_grad()
    def torch_predict(batch: torch.Tensor) -> None:
        normalised, _ = collate([(image, 0) for image in batch])
        model(normalised).softmax(1)

    with tempfile.TemporaryDirectory() as folder:
        write_export(Path(folder), model, classes, args.size)
        predictor = Predictor(folder, threads=args.threads)

        def onnx_predict(batch: torch.Tensor) -> None:
            predictor.session.run(None, {"images": batch.numpy()})

        print(
            f"{arch} at {args.size} px, {IMAGES} images in batches of {BATCH}, "
            f"{args.threads} threads"
        )
        for predict in (torch_predict, onnx_predict):  # warm up both
            predict(batches[0])
        ours, baseline = [], []
        for _ in range(args.repeats):
            baseline.append(timed(lambda: [torch_predict(batch) for batch in batches]))
            ours.append(timed(lambda: [onnx_predict(batch) for batch in batches]))
        report("predict, batched (ONNX Runtime vs torch)", ours, baseline, IMAGES, target=1.0)
        singles = [images[index : index + 1] for index in range(LATENCY_IMAGES)]
        torch_latency = statistics.median(timed(partial(torch_predict, one)) for one in singles)
        onnx_latency = statistics.median(timed(partial(onnx_predict, one)) for one in singles)
        print(
            f"predict, one image: ONNX Runtime {onnx_latency * 1000:.2f} ms vs torch "
            f"{torch_latency * 1000:.2f} ms: {torch_latency / onnx_latency:.2f}x"
        )


if __name__ == "__main__":
    main()
