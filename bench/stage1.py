"""Stage 1's epoch with the body's norms training (fastai's freeze) against a body that trains
nothing (train_stage1.train_body_norms: false), on real photos, and how far each is from
this CPU's limit.

    python -m bench.stage1 [--set hymenoptera] [--size 128] [--repeats 3] [--threads 2]
                           [--arch efficientnet_lite0]

Needs ../shared/datasets. Prints, side by side in this one process, alternating after a
warm-up: the seconds of a stage-1 epoch (one-cycle, evaluation included) of each, their
images/s and ratio. Then each one's training FLOPs an image (counted by torch's
FlopCounterMode on one step) times its images/s, against the FLOP/s of a large float32
matmul measured here: the share of the machine's arithmetic each epoch uses.
"""

import statistics
import tempfile

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from imgclf.data import make_loaders
from imgclf.models import EFFICIENTNET_LITES, HeadOverFrozenBody, body_is_frozen
from imgclf.pack import Pack, write_pack
from imgclf.train import on_device

from .common import timed
from .pack import AUGMENT, epoch, open_photo_set, photo_bench_options, stage1_model

BATCH = 32
CPU = torch.device("cpu")


def training_flops(arch: str, classes: list[str], train_norms: bool, size: int) -> float:
    """FLOPs of one training step (forward, and backward where gradients flow) per image."""
    model = stage1_model(classes, arch, train_norms)
    trained = HeadOverFrozenBody(model) if body_is_frozen(model) else model
    on_device(trained, CPU).train()
    images = torch.randn(BATCH, 3, size, size).contiguous(memory_format=torch.channels_last)
    targets = torch.zeros(BATCH, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(trained(images), targets).backward()
    return counter.get_total_flops() / BATCH


def matmul_flops_per_second(side: int = 2048, repeats: int = 10) -> float:
    """The float32 FLOP/s of a large matrix product, this machine's arithmetic ceiling."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b  # warm-up
    seconds = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * side**3 / seconds


def main() -> None:
    parser = photo_bench_options(__doc__)
    parser.add_argument("--arch", default="efficientnet_lite0", choices=EFFICIENTNET_LITES)
    args = parser.parse_args()
    split, classes = open_photo_set(args)
    paths = split["path"].tolist()
    training_images = int((~split["is_valid"]).sum()) // BATCH * BATCH
    with tempfile.TemporaryDirectory() as folder:
        files = (f"{folder}/images.u8", f"{folder}/index.npz")
        write_pack(paths, paths, args.size, *files, args.threads)
        pack = Pack(*files)
        loaders = lambda: make_loaders(split, classes, pack, BATCH, AUGMENT, 0)  # noqa: E731
        print(
            f"{args.set}: {training_images} training images an epoch, {args.arch} at "
            f"{args.size} px, batch {BATCH}, {args.threads} threads"
        )
        variants = {"norms train": True, "frozen body": False}
        # A warm-up: torch's first epoch in a process is slower.
        epoch(stage1_model(classes, args.arch), loaders)
        seconds = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, train_norms in variants.items():
                model = stage1_model(classes, args.arch, train_norms)
                seconds[name].append(epoch(model, loaders))
        ceiling = matmul_flops_per_second()
        print(f"a 2048 x 2048 float32 matmul: {ceiling / 1e9:.1f} GFLOP/s")
        for name, train_norms in variants.items():
            median = statistics.median(seconds[name])
            rate = training_images / median
            flops = training_flops(args.arch, classes, train_norms, args.size)
            runs = ", ".join(f"{s:.1f}" for s in seconds[name])
            print(
                f"{name}: epoch {median:.1f} s ({runs}), {rate:.0f} images/s; "
                f"{flops / 1e9:.2f} GFLOP an image, {flops * rate / 1e9:.1f} GFLOP/s: "
                f"{flops * rate / ceiling:.0%} of the matmul's"
            )
        ratios = [
            norms / frozen
            for norms, frozen in zip(seconds["norms train"], seconds["frozen body"], strict=True)
        ]
        print(
            f"frozen body: epochs {statistics.median(ratios):.2f}x faster "
            f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
