"""End-to-end runs of the whole workflow: tiny images (32 px, one epoch), and the demo."""

import json
import shutil

import pandas as pd
import pytest
from PIL import Image

from imgclf.files import read_csv
from imgclf.models import build_model
from imgclf.train import HISTORY_COLUMNS, load_weights

from . import images
from .workflow import REPO, planned_rules, snakemake, write_config

CLASSES = ["red", "green", "blue"]
TRAINING = {"train_stage1", "lr_find", "finetune_stage2"}


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
        "lr_find": {"num_iter": 10},
    }
    return {**config, **changes}


def write_photos(workdir):
    for channel, name in enumerate(CLASSES):
        folder = workdir / "photos" / name
        folder.mkdir(parents=True)
        for index in range(12):
            image = images.noise((40, 40), seed=100 * channel + index)
            tint = Image.new("RGB", image.size, tuple(255 * (c == channel) for c in range(3)))
            Image.blend(image, tint, 0.6).save(folder / f"{index}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")
    write_photos(workdir)
    write_config(workdir, tiny_config())
    snakemake(workdir, "--cores", "2")
    return workdir


def test_every_training_output_is_written(trained):
    for stage in ["stage1", "stage2"]:
        folder = trained / "results/train" / stage
        history = read_csv(folder / "history.csv")
        assert list(history.columns) == HISTORY_COLUMNS and len(history) == 1
        assert 0 <= float(history["error_rate"][0]) <= 1
        steps = read_csv(folder / "steps.csv")
        assert {"lr", "momentum", "loss"} <= set(steps.columns) and len(steps) >= 1
        meta = json.loads((folder / "model.json").read_text())
        assert meta["classes"] == CLASSES and meta["arch"] == "efficientnet_lite0"
        assert meta["metrics"]["accuracy"] == pytest.approx(float(history["accuracy"][0]))
        model = build_model(meta["arch"], len(CLASSES), pretrained=False)
        load_weights(model, folder / "model.safetensors")  # strict, and no pickle
        for plot in ["losses.png", "schedule.png"]:
            with Image.open(folder / plot) as image:
                assert image.format == "PNG"
        suggestion = json.loads((trained / f"results/lr_find/{stage}.json").read_text())
        assert suggestion["suggestion"] == "valley" and suggestion["lr"] > 0
        assert isinstance(suggestion["loss_falls"], bool)
        table = read_csv(trained / f"results/lr_find/{stage}.csv")
        assert len(table) >= 3
        with Image.open(trained / f"results/lr_find/{stage}.png") as image:
            assert image.format == "PNG"


def test_auto_rates_come_from_lr_find(trained):
    stage1 = json.loads((trained / "results/train/stage1/model.json").read_text())
    stage2 = json.loads((trained / "results/train/stage2/model.json").read_text())
    lr1 = json.loads((trained / "results/lr_find/stage1.json").read_text())["lr"]
    lr2 = json.loads((trained / "results/lr_find/stage2.json").read_text())["lr"]
    assert stage1["peak_learning_rates"] == pytest.approx([lr1] * 3)
    assert stage2["peak_learning_rates"] == pytest.approx([lr2 / 100, lr2 / 10, lr2])


def test_the_logs_show_the_model_and_each_epoch(trained):
    log = (trained / "logs/train_stage1/train_stage1.log").read_text()
    assert "model:\nClassifier(" in log and "stage1 epoch 1: train_loss" in log
    assert "stage2 epoch 1:" in (trained / "logs/finetune_stage2/finetune_stage2.log").read_text()


def test_the_same_seed_gives_the_same_metrics_on_cpu(trained, tmp_path):
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config())
    snakemake(tmp_path, "--cores", "2")
    for stage in ["stage1", "stage2"]:
        first = pd.read_csv(trained / f"results/train/{stage}/history.csv")
        again = pd.read_csv(tmp_path / f"results/train/{stage}/history.csv")
        columns = ["train_loss", "valid_loss", "error_rate"]
        pd.testing.assert_frame_equal(first[columns], again[columns])


def test_editing_labels_reruns_split_and_training_only(trained):
    split = read_csv(trained / "results/split/split.csv")
    pd.DataFrame({"id": [split["id"][0]], "label": ["drop"]}).to_csv(
        trained / "labels.csv", index=False
    )
    try:
        assert planned_rules(trained) == {"split"} | TRAINING
    finally:
        (trained / "labels.csv").unlink()


def test_a_diverging_stage_stops_naming_stage_epoch_and_rate(tmp_path):
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config(train_stage1={"epochs": 1, "max_lr": 1.0e30}))
    result = snakemake(tmp_path, "--cores", "2", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "stage1: the loss became" in output and "in epoch 1 at learning rate" in output
    assert not (tmp_path / "results/train/stage1").exists() or not any(
        (tmp_path / "results/train/stage1").iterdir()
    )


def test_the_default_config_runs_the_offline_demo(tmp_path):
    """The README's first command: all stages on the digits, with a useful classifier."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    snakemake(tmp_path, "--cores", "2")
    manifest = read_csv(tmp_path / "results/verify/manifest.csv")
    assert len(manifest) == 1797 and manifest["label"].nunique() == 10
    for stage in ["stage1", "stage2"]:
        history = pd.read_csv(tmp_path / f"results/train/{stage}/history.csv")
        assert history["error_rate"].iloc[-1] < 0.1
