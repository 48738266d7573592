"""Experiments side by side: the config's overrides, the leaderboard's choice, and an end-to-end
run of two tiny experiments that share the data stages."""

import json
import shutil

import pandas as pd
import pytest
import yaml

from imgclf.config import ConfigError, check_config, experiment_configs, read_config
from imgclf.experiments import LEADERBOARD_COLUMNS, choose_experiment
from imgclf.files import read_csv

from .tiny_pipeline import (
    CLASSES,
    EXPERIMENTS,
    ONE_THREAD_A_JOB,
    TRAINING,
    tiny_config,
    write_photos,
)
from .workflow import planned_jobs, snakemake, write_config

PER_EXPERIMENT = {"interpret", "export"}  # with the training rules, what an experiment runs
AFTER_AN_EXPERIMENT = {
    ("compare", ""),
    ("choose_experiment", ""),
    ("predict", ""),
    ("overview", ""),
}


def validated(tmp_path, **changes) -> dict:
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config(**changes))
    return read_config(tmp_path / "config.yaml")


def test_an_override_changes_only_the_keys_it_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validated(tmp_path, experiments=EXPERIMENTS)
    configs = experiment_configs(config)
    assert list(configs) == list(EXPERIMENTS)
    shared = {**config, "experiments": None}
    assert configs["base"] == shared
    small = configs["lite1_head_only"]
    assert small["model"] == {**config["model"], "arch": "efficientnet_lite1", "image_size": 24}
    assert small["final_model"] == "stage1"
    assert {key: value for key, value in small.items() if key not in ("model", "final_model")} == {
        key: value for key, value in shared.items() if key not in ("model", "final_model")
    }


def test_no_experiments_key_means_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiment_configs(validated(tmp_path)) == {}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": {"image_size": "large"}}, "'large' is not of type 'integer'"),
        ({"train_stage1": {"max_lr": -1}}, "max_lr"),
        ({"final_model": "stage3"}, "'stage3' is not one of"),
        (
            {"model": {"image_size": 24}, "finetune_stage2": {"start_size": 32}},
            r"finetune_stage2.start_size: 32 is above model.image_size \(24\)",
        ),
    ],
)
def test_an_override_is_checked_against_the_schema(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    config = validated(tmp_path, experiments={"bad": overrides})
    with pytest.raises(ConfigError, match=f"^experiments.bad: (?s:.*){message}"):
        experiment_configs(config)


def test_a_stage_that_would_start_above_its_image_size_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validated(tmp_path, train_stage1={"epochs": 2, "start_size": 64})
    with pytest.raises(ConfigError, match=r"train_stage1.start_size: 64 is above model.image_size"):
        check_config(config)


def board(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["experiment", "error_rate", "valid_loss"])


def test_best_is_the_lowest_error_then_the_lowest_loss():
    ranked = board(("b", 0.10, 0.30), ("c", 0.10, 0.35), ("a", 0.20, 0.25))
    name, reason = choose_experiment("best", ranked)
    assert name == "b"
    assert reason.startswith("final_experiment is best: b has the lowest validation error")
    assert "b 10.00% (0.3000), c 10.00% (0.3500), a 20.00% (0.2500)" in reason
    assert choose_experiment("a", ranked) == ("a", "final_experiment is a")


@pytest.fixture(scope="module")
def experiments_run(trained_once, tmp_path_factory):
    """The finished tiny pipeline given two experiments and run again, locally; yields the
    folder and the jobs that its dry run planned. Each job that runs the model takes 1
    thread, as the run without experiments did."""
    workdir = tmp_path_factory.mktemp("experiments") / "run"
    shutil.copytree(trained_once[0], workdir, symlinks=True)
    write_config(workdir, tiny_config(experiments=EXPERIMENTS))
    planned = planned_jobs(workdir)
    snakemake(workdir, *ONE_THREAD_A_JOB)
    return workdir, planned


@pytest.fixture
def experiments_once(experiments_run):
    return experiments_run[0]


@pytest.fixture
def experiments_copy(experiments_once, tmp_path):
    """A copy of the experiments' workdir, for a test that changes its config or labels."""
    copy = tmp_path / "experiments"
    shutil.copytree(experiments_once, copy, symlinks=True)
    return copy


def change_config(workdir, change) -> None:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    change(config)
    write_config(workdir, config)


def test_each_experiment_trains_apart_from_one_set_of_data_stages(experiments_once, trained):
    for name in EXPERIMENTS:
        folder = experiments_once / "results/experiments" / name
        for output in ["train/stage1/model.safetensors", "interpret/metrics.json"]:
            assert (folder / output).stat().st_size > 0
    assert (experiments_once / "results/experiments/base/train/stage2/model.json").exists()
    assert not (experiments_once / "results/experiments/lite1_head_only/train/stage2").exists()
    # The experiment without overrides is the run without experiments: the same seed gives
    # the same split and, on CPU with the same threads, the same model in another run.
    pd.testing.assert_frame_equal(
        read_csv(experiments_once / "results/split/split.csv"),
        read_csv(trained / "results/split/split.csv"),
    )
    for stage in ["stage1", "stage2"]:
        history = f"train/{stage}/history.csv"
        columns = ["train_loss", "valid_loss", "error_rate"]
        pd.testing.assert_frame_equal(
            pd.read_csv(experiments_once / "results/experiments/base" / history)[columns],
            pd.read_csv(trained / "results" / history)[columns],
            check_exact=True,
        )
    assert (
        experiments_once / "results/experiments/base/train/stage2/model.safetensors"
    ).read_bytes() == (trained / "results/train/stage2/model.safetensors").read_bytes()
    small = json.loads(
        (experiments_once / "results/experiments/lite1_head_only/export/model.json").read_text()
    )
    assert small["image_size"] == 24 and small["stage"] == "stage1"
    assert small["arch"] == "efficientnet_lite1"


def test_experiments_added_to_a_finished_run_reuse_its_data_stages(experiments_run):
    """Only the pack of the new image size is new data: the images decoded at 24 px."""
    _, planned = experiments_run
    assert {rule for rule, _ in planned} == {
        *TRAINING,
        *PER_EXPERIMENT,
        "compare",
        "choose_experiment",
        "predict",
        "overview",
        "pack",
    }
    assert [wildcards for rule, wildcards in planned if rule == "pack"] == ["size=24"]


def test_the_leaderboard_ranks_the_experiments_and_the_best_goes_forward(experiments_once):
    board = pd.read_csv(experiments_once / "results/compare/leaderboard.csv")
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert sorted(board["experiment"]) == sorted(EXPERIMENTS)
    assert list(board.itertuples(index=False)) == sorted(
        board.itertuples(index=False), key=lambda row: (row.error_rate, row.valid_loss)
    )
    rows = board.set_index("experiment")
    assert rows.loc["base", "epochs"] == 2 and rows.loc["lite1_head_only", "epochs"] == 1
    for name in EXPERIMENTS:
        metrics = json.loads(
            (experiments_once / f"results/experiments/{name}/interpret/metrics.json").read_text()
        )
        assert rows.loc[name, "error_rate"] == pytest.approx(metrics["error_rate"])
        assert rows.loc[name, "stage"] == metrics["stage"]
        assert set(metrics["per_class"]) == set(CLASSES)
    assert (board[["train_seconds", "model_mb", "predict_images_per_s"]] > 0).all().all()
    for plot in ["error_per_epoch.png", "error_versus_time.png"]:
        assert (experiments_once / "results/compare" / plot).read_bytes()[:4] == b"\x89PNG"

    best = board["experiment"].iloc[0]
    chosen = experiments_once / f"results/experiments/{best}"
    meta = json.loads((experiments_once / "results/export/model.json").read_text())
    assert meta["experiment"] == best
    assert meta["experiment_reason"].startswith(f"final_experiment is best: {best} has")
    for copied, original in [
        ("results/export/model.onnx", "export/model.onnx"),
        ("results/interpret/review.csv", "interpret/review.csv"),
    ]:
        assert (experiments_once / copied).read_bytes() == (chosen / original).read_bytes()
    predictions = read_csv(experiments_once / "results/predict/predictions.csv")
    assert len(predictions) == 3 and set(predictions["label"]) <= {*CLASSES, ""}


def test_a_rerun_does_nothing(experiments_once):
    assert planned_jobs(experiments_once) == set()


def test_editing_one_experiment_reruns_that_experiment_only(experiments_copy):
    def longer(config):
        config["experiments"]["lite1_head_only"]["train_stage1"] = {"epochs": 2}

    change_config(experiments_copy, longer)
    assert (
        planned_jobs(experiments_copy)
        == {(rule, "experiment=lite1_head_only") for rule in {"train_stage1", *PER_EXPERIMENT}}
        | AFTER_AN_EXPERIMENT
    )


def test_adding_an_experiment_runs_only_the_new_one(experiments_copy):
    def add(config):
        config["experiments"]["no_flips"] = {"augment": {"flip": False}}

    change_config(experiments_copy, add)
    new = "experiment=no_flips"
    assert (
        planned_jobs(experiments_copy)
        == {
            ("lr_find", f"{new}, stage=stage1"),
            ("lr_find", f"{new}, stage=stage2"),
            ("train_stage1", new),
            ("finetune_stage2", new),
            *((rule, new) for rule in PER_EXPERIMENT),
        }
        | AFTER_AN_EXPERIMENT
    )


def test_a_labels_edit_reruns_split_and_every_experiment(experiments_copy):
    split = read_csv(experiments_copy / "results/split/split.csv")
    (experiments_copy / "labels.csv").write_text(f"id,label\n{split['id'].iloc[0]},drop\n")
    planned = planned_jobs(experiments_copy)
    assert {rule for rule, _ in planned} == {
        "split",
        "audit",
        *TRAINING,
        *PER_EXPERIMENT,
        "compare",
        "choose_experiment",
        "predict",
        "overview",
    }
    for name in EXPERIMENTS:
        assert ("train_stage1", f"experiment={name}") in planned


def test_naming_the_final_experiment_only_changes_the_choice(experiments_copy):
    board = pd.read_csv(experiments_copy / "results/compare/leaderboard.csv")
    other = board["experiment"].iloc[-1]
    change_config(experiments_copy, lambda config: config.update(final_experiment=other))
    assert planned_jobs(experiments_copy) == {
        ("choose_experiment", ""),
        ("predict", ""),
        ("overview", ""),
    }
    snakemake(experiments_copy, "--cores", "2")
    meta = json.loads((experiments_copy / "results/export/model.json").read_text())
    assert (meta["experiment"], meta["experiment_reason"]) == (
        other,
        f"final_experiment is {other}",
    )


def test_experiments_share_the_machine_s_cores(experiments_once):
    result = snakemake(experiments_once, "-n", "--forcerun", "train_stage1", "--cores", "4")
    blocks = (result.stdout + result.stderr).split("\nrule ")
    trainings = [block for block in blocks if block.startswith("train_stage1:")]
    assert len(trainings) == 2
    assert all("threads: 2" in block for block in trainings)


def test_the_report_has_the_experiments_pages(experiments_once, tmp_path):
    report = tmp_path / "report.html"
    snakemake(experiments_once, "--report", str(report))
    html = report.read_text()
    for part in ["leaderboard.csv", "error_per_epoch.png", "error_versus_time.png", "base"]:
        assert part in html, part
