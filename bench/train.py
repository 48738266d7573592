"""Benchmark of the training loop at the demo's settings (config.yaml).

    python -m bench.train [--repeats 3] [--threads 2]

Prints images/s of one stage-1 epoch and one stage-2 epoch fed by imgclf's data loading,
beside the same model and batches fed tensors already in memory (the compute limit of the
machine), and their ratio (target: at least 0.85 for both stages).
"""

import argparse
import os
import time
from pathlib import Path

from imgclf.train import OneCycleSettings, fit_one_cycle

from .common import report
from .demo_data import demo_job, temporary_folder


def epoch_seconds(job, model, batches, valid, device) -> float:
    settings = OneCycleSettings(1, 25, 0.3, [0.95, 0.85], 0.01)
    started = time.perf_counter()
    fit_one_cycle(model, batches, valid, [1e-3] * 3, settings, "bench", device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with temporary_folder() as folder:
        job, _ = demo_job(Path(folder), args.threads)
        train_loader, valid_loader, device = job.start()
        in_memory = list(train_loader)  # the same batches, decoded and augmented beforehand
        valid = [next(iter(valid_loader))]  # evaluation is not what is measured
        images = sum(len(targets) for _, targets in in_memory)
        print(
            f"{images} training images/epoch, {job.model.arch} at {job.model.image_size} px, "
            f"batch {job.model.batch_size}, {args.threads} threads, {device}"
        )
        for stage in ["stage1", "stage2"]:
            ours, baseline = [], []
            for _ in range(args.repeats):
                model = job.build() if stage == "stage1" else stage2(job, Path(folder))
                ours.append(epoch_seconds(job, model, train_loader, valid, device))
                model = job.build() if stage == "stage1" else stage2(job, Path(folder))
                baseline.append(epoch_seconds(job, model, in_memory, valid, device))
            # A ratio of rates: baseline time / our time, so 1.0 means no loading overhead.
            report(f"train {stage}", ours, baseline, images, target=0.85)


def stage2(job, folder: Path):
    from imgclf.train import save_weights

    weights = folder / "stage1.safetensors"
    if not weights.exists():
        save_weights(job.build(), weights)
    return job.build(str(weights))


if __name__ == "__main__":
    main()
