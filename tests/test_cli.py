"""The newcomer's path: classes found in the data, and the one `imgclf` command."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from . import images
from .tiny_pipeline import CLASSES, write_photos
from .workflow import snakemake, write_config

IMGCLF = [sys.executable, "-m", "imgclf.cli"]


def imgclf(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*IMGCLF, *args], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


def pets_layout(workdir: Path) -> None:
    """The tiny photos as fastai's pets lie: one folder, the class in each file's name."""
    write_photos(workdir)
    flat = workdir / "pets"
    flat.mkdir()
    for name in CLASSES:
        for path in sorted((workdir / "photos" / name).iterdir()):
            shutil.copy(path, flat / f"{name}_{path.stem}.png")
    (flat / "README.txt").write_text("not a photo")


def manifest_counts(workdir: Path) -> dict[str, int]:
    manifest = pd.read_csv(workdir / "results/verify/manifest.csv")
    return manifest["label"].value_counts().sort_index().to_dict()


def test_init_on_a_folder_tree_writes_a_config_that_trains(tmp_path):
    write_photos(tmp_path)
    said = imgclf(tmp_path, "init", "photos")
    assert "3 classes: blue (12), green (12), red (12)" in said.stdout
    assert "snakemake --cores 4 --configfile config.yaml" in said.stdout
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config == {"classes_from": {"folder": "photos"}}
    result = snakemake(tmp_path, "--cores", "2", "--until", "train_stage1")
    assert "3 classes, found in photos: blue, green, red" in result.stdout + result.stderr
    assert manifest_counts(tmp_path) == {"blue": 12, "green": 12, "red": 12}
    meta = (tmp_path / "results/train/stage1/model.json").read_text()
    assert '"image_size": 224' in meta and '"flip": true' in meta

    again = imgclf(tmp_path, "init", "photos", check=False)
    assert again.returncode == 2 and "config.yaml exists" in again.stderr


def test_init_finds_the_classes_in_pets_file_names(tmp_path):
    pets_layout(tmp_path)
    imgclf(tmp_path, "init", "pets")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["classes_from"]["folder"] == "pets"
    assert re.search(config["classes_from"]["pattern"], "great_pyrenees_3.jpg")[1] == (
        "great_pyrenees"
    )
    snakemake(tmp_path, "--cores", "2", "--until", "verify")
    assert manifest_counts(tmp_path) == {"blue": 12, "green": 12, "red": 12}


def test_a_local_archive_and_a_pattern_give_the_classes_of_its_file_names(tmp_path):
    pets_layout(tmp_path)
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as archive:
        for path in sorted((tmp_path / "pets").iterdir()):
            archive.write(path, f"images/{path.name}")
    config = {"classes_from": {"archive": "pets.zip", "pattern": r"([^/]+)_\d+\.png$"}}
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "2", "--until", "verify")
    assert "3 classes, found in pets.zip: blue, green, red" in result.stdout + result.stderr
    assert manifest_counts(tmp_path) == {"blue": 12, "green": 12, "red": 12}


def test_a_folder_of_url_lists_gives_a_class_a_list(tmp_path):
    write_photos(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in CLASSES:
        paths = sorted((tmp_path / "photos" / name).iterdir())[:5]
        (lists / f"urls_{name}.txt").write_text("".join(f"{path}\n" for path in paths))
    (lists / "notes.txt").write_text("not a list")
    config = {"classes_from": {"url_lists": "lists"}, "download": {"allow_local": True}}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "--until", "verify")
    assert manifest_counts(tmp_path) == {"blue": 5, "green": 5, "red": 5}


@pytest.mark.parametrize(
    "layout, config, message",
    [
        (
            "drop",
            {"classes_from": {"folder": "photos"}},
            r"photos/drop gives the class name 'drop'",
        ),
        ("my cats", {"classes_from": {"folder": "photos"}}, r"photos/my cats gives the class name"),
        (
            None,
            {
                "classes_from": {"folder": "photos"},
                "classes": {"a": {"folder": "photos/red"}, "b": {"folder": "photos/blue"}},
            },
            "give classes .* or classes_from .*found: classes, classes_from",
        ),
        (None, {"seed": 1}, r"give classes .*found: neither"),
        (
            None,
            {"classes_from": {"folder": "photos", "url_lists": "photos"}},
            "classes_from: give folder",
        ),
        (None, {"classes_from": {"folder": "nowhere"}}, "folder 'nowhere' does not exist"),
        (
            None,
            {"classes_from": {"archive": "http://127.0.0.1:9/pets.zip", "pattern": "(.+)_"}},
            "is not a local file: the classes are found when the workflow starts",
        ),
        (None, {"classes_from": {"archive": "pets.zip"}}, "classes_from: give folder"),
    ],
)
def test_a_bad_found_class_stops_the_run_before_any_job(tmp_path, layout, config, message):
    write_photos(tmp_path)
    if layout:
        (tmp_path / "photos" / layout).mkdir()
        (tmp_path / "photos" / layout / "0.png").write_bytes(images.png(99, (40, 40)))
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_one_command_leads_to_each_tool_and_its_help_fits_a_screen(tmp_path):
    overview = imgclf(tmp_path, "--help").stdout
    for command in ("init", "predict", "review", "clean", "serve"):
        assert f"imgclf {command}" in overview
        helped = imgclf(tmp_path, command, "--help").stdout
        assert helped.startswith(f"usage: imgclf {command}"), helped
        assert len(helped.splitlines()) <= 50, command  # a terminal window
    unknown = imgclf(tmp_path, "train", check=False)
    assert unknown.returncode == 2 and "the commands: init, predict" in unknown.stdout


def test_a_missing_web_extra_is_named_with_the_command_that_installs_it(tmp_path):
    hidden = "import sys; sys.modules['starlette'] = None; from imgclf.cli import main; "
    result = subprocess.run(
        [sys.executable, "-c", hidden + "sys.exit(main(['clean']))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "imgclf clean needs starlette: pip install -e '.[serve]'" in result.stderr


def test_init_keeps_the_split_of_a_tree_of_train_and_val_folders(tmp_path):
    """hymenoptera's layout: train/{ants,bees}, val/{ants,bees}."""
    write_photos(tmp_path)
    for name in CLASSES:
        photos = sorted((tmp_path / "photos" / name).iterdir())
        for part, chosen in (("train", photos[:9]), ("val", photos[9:])):
            (tmp_path / "split" / part / name).mkdir(parents=True)
            for path in chosen:
                shutil.copy(path, tmp_path / "split" / part / name / path.name)
    said = imgclf(tmp_path, "init", "split")
    assert "3 classes: blue (12), green (12), red (12)" in said.stdout
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["split"] == {"valid_folder": "val"}
    assert config["classes_from"]["pattern"] == "^[^/]+/([^/]+)/"
