"""End-to-end runs of the whole workflow: tiny images (32 px, one epoch), and the demo."""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from imgclf.config import read_config
from imgclf.files import read_csv
from imgclf.interpret import REVIEW_COLUMNS
from imgclf.models import build_model
from imgclf.train import HISTORY_COLUMNS, load_weights

from . import images
from .tiny_pipeline import AFTER_LABELS, CLASSES, RESULTS, TRAINING, tiny_config, write_photos
from .workflow import REPO, planned_rules, snakemake, write_config


def test_every_training_output_is_written(trained):
    split = read_csv(trained / "results/split/split.csv")
    train_batches = (split["is_valid"] == "False").sum() // 8  # batch 8, the last one dropped
    for stage in ["stage1", "stage2"]:
        folder = trained / "results/train" / stage
        history = read_csv(folder / "history.csv")
        assert list(history.columns) == HISTORY_COLUMNS and len(history) == 1
        assert 0 <= float(history["error_rate"][0]) <= 1
        steps = read_csv(folder / "steps.csv").astype(float)
        assert list(steps.columns) == ["step", "lr", "momentum", "loss"]
        assert len(steps) == train_batches  # one epoch
        meta = json.loads((folder / "model.json").read_text())
        assert steps["lr"].max() == pytest.approx(meta["peak_learning_rates"][-1], rel=0.01)
        assert meta["classes"] == CLASSES and meta["arch"] == "efficientnet_lite0"
        assert meta["metrics"]["accuracy"] == pytest.approx(float(history["accuracy"][0]))
        model = build_model(meta["arch"], len(CLASSES), pretrained=False)
        load_weights(model, folder / "model.safetensors")  # strict, and no pickle
        for plot in ["losses.png", "schedule.png"]:
            with Image.open(folder / plot) as image:
                assert image.format == "PNG"
        suggestion = json.loads((trained / f"results/lr_find/{stage}.json").read_text())
        assert suggestion["suggestion"] == "valley" and suggestion["lr"] > 0
        assert isinstance(suggestion["loss_falls"], bool) and suggestion["from_sweep"]
        table = read_csv(trained / f"results/lr_find/{stage}.csv").astype(float)
        assert table["lr"].iloc[0] == pytest.approx(1e-7)  # the schema's start_lr
        assert table["lr"].is_monotonic_increasing and 10 <= len(table) <= 50  # num_iter
        with Image.open(trained / f"results/lr_find/{stage}.png") as image:
            assert image.format == "PNG"


def test_auto_rates_come_from_lr_find(trained):
    stage1 = json.loads((trained / "results/train/stage1/model.json").read_text())
    stage2 = json.loads((trained / "results/train/stage2/model.json").read_text())
    lr1 = json.loads((trained / "results/lr_find/stage1.json").read_text())["lr"]
    lr2 = json.loads((trained / "results/lr_find/stage2.json").read_text())["lr"]
    assert stage1["peak_learning_rates"] == pytest.approx([lr1] * 3)
    assert stage2["peak_learning_rates"] == pytest.approx([lr2 / 100, lr2 / 10, lr2])


def test_a_model_carries_the_resolved_config_that_made_it(trained):
    """Seed, model, augmentation and every stage's settings with max_lr as the rates used,
    beside the split's hash: enough to train the model again from its outputs."""
    config = read_config(trained / "config.yaml")
    split_sha256 = hashlib.sha256((trained / "results/split/split.csv").read_bytes()).hexdigest()
    metas = {
        where: json.loads((trained / "results" / where / "model.json").read_text())
        for where in ("train/stage1", "train/stage2", "export")
    }
    for where, meta in metas.items():
        made = meta["config"]
        assert made["seed"] == config["seed"] == 1, where
        assert made["model"] == config["model"] and made["augment"] == config["augment"], where
        assert meta["split_sha256"] == split_sha256, where
    stage1, stage2 = metas["train/stage1"], metas["train/stage2"]
    assert list(stage1["config"]["stages"]) == ["stage1"]
    assert stage2["config"]["stages"]["stage1"] == stage1["config"]["stages"]["stage1"]
    for stage, section in (("stage1", "train_stage1"), ("stage2", "finetune_stage2")):
        resolved = stage2["config"]["stages"][stage]
        assert resolved["max_lr"] == metas[f"train/{stage}"]["peak_learning_rates"]
        assert {**resolved, "max_lr": "auto"} == config[section]
    assert metas["export"]["config"] == metas[f"train/{metas['export']['stage']}"]["config"]


def test_the_logs_show_the_model_and_each_epoch(trained):
    log = (trained / "logs/train_stage1/train_stage1.log").read_text()
    assert "model:\nClassifier(" in log and "stage1 epoch 1 at 32 px: train_loss" in log
    stage2 = (trained / "logs/finetune_stage2/finetune_stage2.log").read_text()
    assert "stage2 epoch 1 at 32 px:" in stage2


def test_interpret_writes_the_diagnosis(trained):
    folder = trained / "results/interpret"
    split = read_csv(trained / "results/split/split.csv")
    valid = split[split["is_valid"] == "True"]
    matrix = read_csv(folder / "confusion_matrix.csv").set_index("actual").astype(int)
    assert list(matrix.index) == CLASSES and list(matrix.columns) == CLASSES
    assert matrix.sum().sum() == len(valid)
    assert (matrix.sum(axis=1) == valid["label"].value_counts().reindex(CLASSES)).all()
    metrics = json.loads((folder / "metrics.json").read_text())
    # final_model is best by default: the stage of the lower validation loss, and both losses.
    stages = {
        stage: json.loads((trained / f"results/train/{stage}/model.json").read_text())
        for stage in ("stage1", "stage2")
    }
    losses = {stage: meta["metrics"]["valid_loss"] for stage, meta in stages.items()}
    assert metrics["stage"] == min(losses, key=losses.get)
    assert metrics["reason"].startswith("final_model is best: ")
    versus = metrics["stage2_versus_stage1"]
    assert versus == stages["stage2"]["versus_stage1"]
    assert versus["worse"] == (losses["stage2"] > 1.1 * losses["stage1"])
    correct = sum(matrix.at[label, label] for label in CLASSES)
    assert metrics["accuracy"] == pytest.approx(correct / len(valid))
    assert set(metrics["per_class"]) == set(CLASSES)
    per_class = read_csv(folder / "per_class.csv").set_index("class")
    assert list(per_class.columns) == ["precision", "recall", "f1", "images"]
    for label in CLASSES:
        count = matrix.loc[label].sum()
        assert int(per_class.at[label, "images"]) == count
        recall = matrix.at[label, label] / count
        assert float(per_class.at[label, "recall"]) == pytest.approx(recall)
    most_confused = read_csv(folder / "most_confused.csv")
    assert list(most_confused.columns) == ["actual", "predicted", "count"]
    pairs = [
        (actual, predicted, str(matrix.at[actual, predicted]))
        for actual in CLASSES
        for predicted in CLASSES
        if actual != predicted and matrix.at[actual, predicted] >= 2  # min_val
    ]
    assert sorted(map(tuple, most_confused.values.tolist())) == sorted(pairs)
    review = read_csv(folder / "review.csv")
    assert list(review.columns) == [*REVIEW_COLUMNS, "decision"]
    audit = read_csv(trained / "results/audit/audit.csv")
    flagged = audit[audit["issue"] != ""]
    top = review[review["issue"] == "top_loss"]
    assert len(top) == 20 and len(review) == len(flagged) + 20  # interpret.review: 20
    assert set(review["id"]) == set(flagged["id"]) | set(top["id"])
    assert set(review["decision"]) == {""}
    # The audit's sure finds head the queue, in its order (review_table's units pin the rest).
    sure = flagged[
        (flagged["issue"] == "near_duplicate")
        | ((flagged["issue"] == "label") & (flagged["confident"] == "True"))
    ]
    assert review["id"].head(len(sure)).tolist() == sure["id"].tolist()
    assert set(review["is_valid"]) <= {"True", "False"}
    assert set(review["id"]) <= set(split["id"])
    for plot in [
        folder / "confusion_matrix.png",
        folder / "top_losses.png",
        trained / "results/train/stage1/batch.png",
    ]:
        with Image.open(plot) as image:
            assert image.format == "PNG"
    summary = read_csv(trained / "results/verify/summary.csv")
    assert list(summary["class"]) == CLASSES and set(summary["kept"]) == {"12"}
    assert set(summary["rejected"]) == {"0"}
    assert "model:\nClassifier(" in (trained / "logs/train_stage1/train_stage1.log").read_text()


FRESH_PROCESS = """
import json, sys
from pathlib import Path
import numpy as np, onnxruntime
from PIL import Image, ImageOps
folder, paths = Path(sys.argv[1]), sys.argv[2:]
meta = json.loads((folder / "model.json").read_text())
size = meta["image_size"]
session = onnxruntime.InferenceSession(str(folder / meta["file"]))
def pixels(path):  # model.json's "preprocess"
    with Image.open(path) as image:
        square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    return np.asarray(square).transpose(2, 0, 1)
batch = np.stack([pixels(path) for path in paths])
probabilities = session.run(None, {meta["input"]["name"]: batch})[0]
assert not any(name.split(".")[0] == "imgclf" for name in sys.modules)
print(json.dumps(probabilities.tolist()))
"""


def test_the_exported_model_predicts_in_a_process_that_never_saw_this_project(trained, tmp_path):
    from imgclf.data import Collate, prepare_file

    meta = json.loads((trained / "results/export/model.json").read_text())
    assert meta["classes"] == CLASSES and meta["stage"] == "stage2" and meta["image_size"] == 32
    assert (
        meta["metrics"]
        == json.loads((trained / "results/train/stage2/model.json").read_text())["metrics"]
    )
    split_bytes = (trained / "results/split/split.csv").read_bytes()
    assert meta["split_sha256"] == hashlib.sha256(split_bytes).hexdigest()
    assert {"torch", "onnxruntime", "imgclf"} <= set(meta["versions"])
    split = read_csv(trained / "results/split/split.csv")
    paths = [str(trained / path) for path in split["path"][:10]]
    assert meta["output"]["averages_mirror"] is True  # the tiny pipeline trains on mirrors
    model = build_model("efficientnet_lite0", len(CLASSES), pretrained=False)
    load_weights(model, trained / "results/train/stage2/model.safetensors")
    model.averages_mirror = True
    with torch.no_grad():
        batch, _ = Collate()([(prepare_file(path, 32), 0) for path in paths])
        expected = model.eval()(batch).softmax(1).numpy()
    # A fresh interpreter in an empty folder, with only onnxruntime, Pillow and numpy.
    result = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS, str(trained / "results/export"), *paths],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    exported = np.array(json.loads(result.stdout))
    assert np.abs(exported - expected).max() < 1e-4


def test_predict_classifies_the_config_folder_and_the_command_agrees(trained):
    predictions = read_csv(trained / "results/predict/predictions.csv")
    names = [Path(path).name for path in predictions["path"]]
    assert names == ["bluish.png", "notes.txt", "reddish.png"]
    by_name = predictions.set_index(predictions["path"].map(lambda path: Path(path).name))
    assert by_name.at["notes.txt", "error"].startswith("not an image")
    assert by_name.at["notes.txt", "label"] == ""
    for name in ["bluish.png", "reddish.png"]:
        row = by_name.loc[name]
        assert row["label"] in CLASSES and row["error"] == ""
        assert CLASSES[int(row["index"])] == row["label"]
        assert sum(float(row[label]) for label in CLASSES) == pytest.approx(1, abs=1e-5)
        assert float(row["probability"]) == pytest.approx(float(row[row["label"]]))
    command = [sys.executable, "-m", "imgclf.predict", "results/export", "new_photos"]
    result = subprocess.run(command, cwd=trained, capture_output=True, text=True, check=True)
    assert (
        result.stdout.replace("\r\n", "\n")
        == (trained / "results/predict/predictions.csv").read_text()
    )

    from imgclf.predict import Predictor

    prediction = Predictor(trained / "results/export").predict(trained / "new_photos/bluish.png")
    assert prediction.label == by_name.at["bluish.png", "label"]
    assert prediction.probabilities[prediction.label] == pytest.approx(
        float(by_name.at["bluish.png", "probability"]), abs=1e-6
    )


def test_predict_command_refuses_a_folder_without_a_model(trained):
    command = [sys.executable, "-m", "imgclf.predict", "results", "new_photos"]
    result = subprocess.run(command, cwd=trained, capture_output=True, text=True)
    assert result.returncode == 2 and "has no model.json" in result.stderr
    command = [sys.executable, "-m", "imgclf.predict", "results/export", "missing.png"]
    result = subprocess.run(command, cwd=trained, capture_output=True, text=True)
    assert result.returncode == 2 and "no such file or folder: missing.png" in result.stderr


def test_the_cleaning_loop_reruns_split_and_what_follows_only(trained_copy, tmp_path):
    review = read_csv(trained_copy / "results/interpret/review.csv")
    relabelled, dropped = review.iloc[0], review.iloc[1]
    new_label = next(label for label in CLASSES if label != relabelled["label"])
    review.loc[0, "decision"] = new_label
    review.loc[1, "decision"] = "drop"
    review.loc[2, "decision"] = "keep"
    review.to_csv(tmp_path / "review.csv", index=False)
    command = [sys.executable, "-m", "imgclf.review", str(tmp_path / "review.csv")]
    result = subprocess.run(command, cwd=trained_copy, capture_output=True, text=True, check=True)
    assert "1 relabelled, 1 dropped" in result.stdout
    labels = read_csv(trained_copy / "labels.csv")
    assert dict(zip(labels["id"], labels["label"], strict=True)) == {
        relabelled["id"]: new_label,
        dropped["id"]: "drop",
    }
    assert planned_rules(trained_copy) == AFTER_LABELS | TRAINING | RESULTS
    before = (trained_copy / "labels.csv").stat().st_mtime_ns
    again = subprocess.run(command, cwd=trained_copy, capture_output=True, text=True, check=True)
    assert "Nothing changed" in again.stdout
    assert (trained_copy / "labels.csv").stat().st_mtime_ns == before


def test_a_bad_review_is_refused_and_the_labels_file_untouched(trained, tmp_path):
    review = read_csv(trained / "results/interpret/review.csv")
    review.loc[0, "decision"] = "purple"
    review.to_csv(tmp_path / "review.csv", index=False)
    command = [sys.executable, "-m", "imgclf.review", str(tmp_path / "review.csv")]
    result = subprocess.run(command, cwd=trained, capture_output=True, text=True)
    assert result.returncode == 1
    assert "'purple'" in result.stderr and "labels.csv is unchanged" in result.stderr
    assert not (trained / "labels.csv").exists()


def test_the_report_builds_with_every_part(trained, tmp_path):
    report = tmp_path / "report.html"
    snakemake(trained, "--report", str(report))
    html = report.read_text()
    parts = [
        "summary.csv",
        "batch.png",
        "stage1.png",
        "stage2.png",
        "losses.png",
        "schedule.png",
        "confusion_matrix.png",
        "top_losses.png",
        "per_class.csv",
        "overview.html",
        "Start with",  # the report's own introduction
    ]
    for part in parts:
        assert part in html, part


def test_the_report_opens_with_the_run(trained):
    page = (trained / "results/overview.html").read_text()
    meta = json.loads((trained / "results/export/model.json").read_text())
    error = 100 * meta["metrics"]["error_rate"]
    assert f"3 classes, 36 images;\nvalidation error <b>{error:.1f} %</b>" in page
    assert meta["stage_reason"] in page and f"{meta['stage']} at 32 px" in page
    for name in CLASSES:
        assert f"<td>{name}</td><td>12</td>" in page
    review = read_csv(trained / "results/interpret/review.csv")
    assert f"Review the {len(review)} images" in page
    assert "imgclf clean" in page and "imgclf predict results/export" in page


def test_final_model_is_a_choice_made_without_retraining(trained_copy, tmp_path):
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config(final_model="stage1"))
    assert "finetune_stage2" not in planned_rules(tmp_path)
    write_config(trained_copy, tiny_config(final_model="stage2"))
    assert planned_rules(trained_copy) == RESULTS


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


def test_a_tiny_data_set_of_one_batch_an_epoch_trains_at_checked_auto_rates(tmp_path):
    """21 photos at batch 32: lr_find cycles the one batch; the rates used and why are logged."""
    write_photos(tmp_path, per_class=7)
    write_config(tmp_path, tiny_config(model={"image_size": 32, "batch_size": 32}, lr_find={}))
    snakemake(tmp_path, "--cores", "2", "results/interpret/metrics.json")
    split = read_csv(tmp_path / "results/split/split.csv")
    assert (split["is_valid"] == "False").sum() <= 32
    found = {
        stage: json.loads((tmp_path / f"results/lr_find/{stage}.json").read_text())
        for stage in ("stage1", "stage2")
    }
    assert len(read_csv(tmp_path / "results/lr_find/stage1.csv")) > 20
    assert found["stage2"]["lr"] <= found["stage1"]["lr"] / 10
    for stage, rule in (("stage1", "train_stage1"), ("stage2", "finetune_stage2")):
        log = (tmp_path / f"logs/{rule}/{rule}.log").read_text()
        assert f"(auto: {found[stage]['reason']})" in log
        history = pd.read_csv(tmp_path / f"results/train/{stage}/history.csv")
        assert np.isfinite(history["valid_loss"]).all()
    versus = json.loads((tmp_path / "results/interpret/metrics.json").read_text())[
        "stage2_versus_stage1"
    ]
    assert versus["stage2"]["valid_loss"] < 2 * versus["stage1"]["valid_loss"]


@pytest.mark.timeout(600)  # the whole demo: about 5 minutes on two cores
def test_the_default_config_runs_the_offline_demo(tmp_path):
    """The README's first command: all stages on the digits, with a useful classifier."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    snakemake(tmp_path, "--cores", "2")
    manifest = read_csv(tmp_path / "results/verify/manifest.csv")
    assert len(manifest) == 1797 and manifest["label"].nunique() == 10
    for stage in ["stage1", "stage2"]:
        history = pd.read_csv(tmp_path / f"results/train/{stage}/history.csv")
        assert history["error_rate"].iloc[-1] < 0.1
    metrics = json.loads((tmp_path / "results/interpret/metrics.json").read_text())
    assert metrics["error_rate"] < 0.1 and len(metrics["per_class"]) == 10
    assert (tmp_path / "results/export/model.onnx").stat().st_size > 1_000_000


def test_training_and_interpret_jobs_ask_for_the_configured_gpus(tmp_path):
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config(gpu=1, gpu_model="a100"))
    plan = snakemake(tmp_path, "-n").stdout
    jobs = re.findall(r"^rule (\w+):.*?^\s+resources: (.*?)$", plan, re.MULTILINE | re.DOTALL)
    asking = {rule for rule, resources in jobs if "gpu=1, gpu_model=a100" in resources}
    assert asking == {"features", "lr_find", "train_stage1", "finetune_stage2", "interpret"}


def test_predict_reads_every_file_as_verify_does_and_never_dies_on_one(trained, tmp_path):
    from imgclf.predict import Predictor

    from . import images

    predictor = Predictor(trained / "results/export")
    grey = np.array([[1000] * 16 + [32768] * 16] * 32)
    swapped = images.icc_rgb_profile(images.SRGB_BLUE, images.SRGB_GREEN, images.SRGB_RED)
    files = {
        "bomb.png": images.png_header_only(20000, 20000),
        "deep.png": images.high_depth(grey.astype(np.uint16), "PNG"),
        "eight.png": images.high_depth(np.round(grey / 257).astype(np.uint8), "PNG"),
        "profiled.png": images.with_profile((255, 0, 0), swapped),
        "blue.png": images.encode(Image.new("RGB", (32, 32), (0, 0, 255)), "PNG"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    table = predictor.predict_files(sorted(str(tmp_path / name) for name in files))
    rows = table.set_index(table["path"].map(lambda path: Path(path).name))
    assert rows.at["bomb.png", "error"].startswith("Image size (400000000 pixels) exceeds")
    assert pd.isna(rows.at["bomb.png", "index"])
    for same, as_ in (("deep.png", "eight.png"), ("profiled.png", "blue.png")):
        assert rows.loc[same, CLASSES].astype(float).tolist() == pytest.approx(
            rows.loc[as_, CLASSES].astype(float).tolist(), abs=1e-3
        ), same


def test_predict_answers_every_entry_with_a_row_and_never_waits_on_one(trained, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(trained / "photos/red/0.png", folder / "red.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "zeros.png").symlink_to("/dev/zero")
    (folder / "gone.png").symlink_to(folder / "nothing")
    os.mkfifo(tmp_path / "named.png")
    (tmp_path / "huge.png").write_bytes(images.png_header_only(12000, 12000))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "imgclf.predict", str(trained / "results/export")),
            *(str(folder), str(tmp_path / "named.png"), str(tmp_path / "huge.png")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    table = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)
    errors = dict(zip(table["path"].map(lambda path: Path(path).name), table["error"], strict=True))
    assert errors["red.png"] == ""
    for name in ("pipe.png", "zeros.png", "named.png"):
        assert errors[name].endswith(f"{name} is not a regular file"), errors[name]
    assert errors["loop.png"].endswith("is not a regular file (a symbolic link loop)")
    assert "No such file" in errors["gone.png"]
    assert errors["huge.png"].startswith("12000x12000 is over the max_pixels of 50000000")
    assert len(table) == 7


@pytest.mark.timeout(300)
def test_predict_holds_a_batch_of_model_size_images_not_photos(trained, tmp_path):
    """Eight 4000 x 4000 photos kept for one batch are 384 MB; one at a time, 48 MB."""
    script = f"""
import resource
import numpy as np
from PIL import Image
from imgclf.predict import Predictor
paths = []
for index in range(8):
    paths.append("{tmp_path}/%d.png" % index)
    pixels = np.zeros((4000, 4000, 3), np.uint8)
    pixels[index] = 255
    Image.fromarray(pixels).save(paths[-1], compress_level=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
table = Predictor("{trained / "results/export"}").predict_files(paths)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print((table["error"] == "").sum(), round(after - before))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    predicted, grown_mb = map(int, result.stdout.split())
    assert predicted == 8
    assert grown_mb < 200, grown_mb  # 8 photos kept for the batch would be 384 MB


def test_a_folder_class_is_trained_on_whole_past_the_url_lists_cap(tmp_path):
    """download.max_images (1,000 a class by default) caps a URL list, someone else's list;
    a folder is the user's own data, kept whole."""
    for name, count in (("many", 1100), ("few", 40)):
        folder = tmp_path / "photos" / name
        folder.mkdir(parents=True)
        for index in range(count):
            images.noise((20, 20), seed=count + index).save(folder / f"{index}.png")
    config = tiny_config(
        classes={name: {"folder": f"photos/{name}"} for name in ("many", "few")},
        verify={"max_size": 20, "min_size": 16},
        model={"image_size": 16, "batch_size": 64},
        train_stage1={"epochs": 1, "max_lr": 1e-3},
        final_model="stage1",
        predict={"folder": None},
    )
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "results/train/stage1/steps.csv")
    downloads = read_csv(tmp_path / "results/download/many.csv")
    assert len(downloads) == 1100 and set(downloads["status"]) == {"ok"}
    split = read_csv(tmp_path / "results/split/split.csv")
    assert (split["label"] == "many").sum() == 1100
    training = (split["is_valid"] == "False").sum()
    steps = read_csv(tmp_path / "results/train/stage1/steps.csv")
    assert len(steps) == training // 64  # every training image, the last partial batch dropped
    summary = read_csv(tmp_path / "results/verify/summary.csv").set_index("class")
    assert summary.loc["many", "kept"] == "1100" and summary.loc["many", "skipped"] == "0"
