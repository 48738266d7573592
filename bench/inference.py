"""What folding the batch norms into the convolutions buys the rules that run a model over
every image: `features` (the pretrained pooled body at 224 px) and `interpret` (a classifier
that averages each image with its mirror, at the size it trained at).

    python -m bench.inference [--set hymenoptera] [--images 400] [--size 128] [--repeats 5]

Needs the photos in ../shared/datasets. Per rule, `train.forward_batches` over the same
photos, already prepared in memory, with and without `models.folded_for_inference` (whose own
cost, the copy and the trace, is billed to the folded runs), in turns; it prints both rates,
their median ratio (target: above 1.0x, or the folding is not worth its code) and the
largest difference between the outputs.
"""

import argparse
import functools

import torch
from torch import nn

from bench.label_noise import PHOTO_SETS, originals
from imgclf.data import load_images, prepare_file
from imgclf.models import build_model, folded_for_inference
from imgclf.train import forward_batches

from .common import report, timed

ARCH, CPU = "efficientnet_lite0", torch.device("cpu")
BATCH = 16  # scripts/features.py's
FEATURES_SIZE = 224  # the features rule's


def compare(name: str, model: nn.Module, images: list[torch.Tensor], repeats: int) -> None:
    def folded_run():
        return forward_batches(folded_for_inference(model), images, BATCH, CPU)

    def plain_run():
        return forward_batches(model, images, BATCH, CPU)

    difference = (folded_run() - plain_run()).abs().max().item()  # and a warm-up of both
    folded, plain = [], []
    for _ in range(repeats):
        folded.append(timed(folded_run))
        plain.append(timed(plain_run))
    report(name, folded, plain, len(images), target=1.0)
    print(f"{name}: largest difference between the outputs {difference:.2g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", choices=PHOTO_SETS, default="hymenoptera")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=128, help="the size interpret runs at")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not PHOTO_SETS[args.set].is_dir():
        raise SystemExit(f"{PHOTO_SETS[args.set]} is missing: the photos are not on this machine")
    torch.set_num_threads(args.threads)
    paths = [str(path) for path, _, _ in originals(args.set, PHOTO_SETS[args.set])]
    paths = paths[: args.images]
    model = build_model(ARCH, n_classes=2, pretrained=True)
    model.averages_mirror = True  # as a model trained on mirrored images, the default, does
    pooled_body = nn.Sequential(model.body, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    runs = [("features", pooled_body, FEATURES_SIZE), ("interpret", model, args.size)]
    for rule, network, size in runs:
        images = load_images(paths, functools.partial(prepare_file, size=size), args.threads)
        compare(f"{rule} ({len(images)} photos at {size} px)", network, images, args.repeats)


if __name__ == "__main__":
    main()
