"""The tiny pipeline of the end-to-end tests: three colours of 40 px photos, 32 px, one epoch."""

import shutil

from PIL import Image

from . import images

CLASSES = ["red", "green", "blue"]
TRAINING = {"train_stage1", "lr_find", "finetune_stage2"}
AFTER_LABELS = {"split", "audit"}  # with TRAINING and RESULTS, what a labels edit reruns
RESULTS = {"interpret", "export", "predict", "overview"}
# The tiny pipeline's runs that tests compare (locally, with experiments, on Slurm) give each
# job that runs the model one thread, since thread counts move a loss's fifth digit; on two
# cores, two such jobs run side by side.
ONE_THREAD_A_JOB = ("--cores", "2", "--max-threads", "1")
# Two experiments: the first, without overrides, trains as a run without experiments does; the
# second trains another body (stage 1 only) at another size.
EXPERIMENTS = {
    "base": {},
    "lite1_head_only": {
        "model": {"arch": "efficientnet_lite1", "image_size": 24},
        "final_model": "stage1",
    },
}


def tiny_config(**changes) -> dict:
    config = {
        "seed": 1,
        "classes": {name: {"folder": f"photos/{name}"} for name in CLASSES},
        "verify": {"max_size": 48, "min_size": 16},
        "split": {"valid_pct": 0.25},
        "model": {"image_size": 32, "batch_size": 8},
        "augment": {"flip": True},
        "train_stage1": {"epochs": 1, "max_lr": "auto"},
        "finetune_stage2": {"epochs": 1, "max_lr": "auto"},
        "lr_find": {"num_iter": 50},
        "interpret": {"review": 20, "top_losses": 4},
        "audit": {"image_size": 64},  # for 40 px photos, as the demo's digits; 224 for photos
        "predict": {"folder": "new_photos"},
    }
    return {**config, **changes}


def write_photos(workdir, per_class=12):
    for channel, name in enumerate(CLASSES):
        folder = workdir / "photos" / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            image = images.noise((40, 40), seed=100 * channel + index)
            tint = Image.new("RGB", image.size, tuple(255 * (c == channel) for c in range(3)))
            Image.blend(image, tint, 0.6).save(folder / f"{index}.png")
    new = workdir / "new_photos"
    new.mkdir()
    shutil.copy(workdir / "photos/red/0.png", new / "reddish.png")
    shutil.copy(workdir / "photos/blue/1.png", new / "bluish.png")
    (new / "notes.txt").write_text("not an image")
