"""A training stage killed part-way resumes from its checkpoint and ends as if never stopped."""

import logging
import signal
import subprocess
import time

import psutil
import pytest
import torch

from imgclf.checkpoint import Checkpoint
from imgclf.models import build_model, freeze_body
from imgclf.train import OneCycleSettings, fit_one_cycle

from .tiny_pipeline import ONE_THREAD_A_JOB, tiny_config, write_photos
from .workflow import snakemake, snakemake_command, write_config

STAGE1 = "results/train/stage1"
CHECKPOINT = "results/checkpoints/stage1.safetensors"


def three_epochs(workdir):
    write_photos(workdir, per_class=60)
    config = tiny_config(
        train_stage1={"epochs": 3, "max_lr": 1e-2},
        final_model="stage1",
        predict={"folder": None},
    )
    write_config(workdir, config)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    three_epochs(workdir)
    snakemake(workdir, *ONE_THREAD_A_JOB, f"{STAGE1}/model.safetensors")
    return workdir


def training_job(runner: psutil.Process) -> psutil.Process | None:
    """The train_stage1 job's Python process among Snakemake's children."""
    for child in runner.children(recursive=True):
        try:
            if any(part.endswith(".train.py") for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_killed_stage_resumes_and_ends_with_the_uninterrupted_weights(uninterrupted, tmp_path):
    """kill -9 mid-epoch (SIGTERM, which a Slurm time limit sends, is test_slurm's)."""
    three_epochs(tmp_path)
    target = f"{STAGE1}/model.safetensors"
    runner = subprocess.Popen(
        snakemake_command(tmp_path, *ONE_THREAD_A_JOB, target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / CHECKPOINT
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), "no checkpoint was written after the first epoch"
    job = training_job(psutil.Process(runner.pid))
    assert job is not None, "the training job ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    assert runner.wait(timeout=120) != 0  # the job failed, as under a time limit
    assert checkpoint.exists() and not (tmp_path / target).exists()

    snakemake(tmp_path, *ONE_THREAD_A_JOB, target)  # the same command again
    log = (tmp_path / "logs/train_stage1/train_stage1.log").read_text()
    assert "resuming after epoch 1, the last one finished" in log
    assert (tmp_path / target).read_bytes() == (uninterrupted / target).read_bytes()
    history = (tmp_path / STAGE1 / "history.csv").read_text().splitlines()
    assert len(history) == 4  # a header and three epochs
    assert not checkpoint.exists()  # the stage's outputs are written: it has served


def separable(count=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(count) % 3
    images = torch.randn(count, 3, 32, 32, generator=generator)
    images[torch.arange(count), targets] += 2.0
    dataset = torch.utils.data.TensorDataset(images, targets)
    return torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, generator=generator)


def test_a_checkpoint_of_another_run_is_ignored_with_a_log_line(tmp_path, caplog):
    settings = OneCycleSettings(1, 25, 0.3, [0.95, 0.85], 0.01)
    cpu = torch.device("cpu")

    def train(key):
        torch.manual_seed(0)
        model = build_model("efficientnet_lite0", 3, pretrained=False)
        freeze_body(model)
        loader = separable()
        checkpoint = Checkpoint(tmp_path / "stage1.safetensors", key)
        fit_one_cycle(model, loader, loader, [1e-3] * 3, settings, "stage1", cpu, checkpoint)

    train("split A")
    assert (tmp_path / "stage1.safetensors").exists()
    with caplog.at_level(logging.INFO):
        train("split B")
    assert (
        "ignoring the checkpoint" in caplog.text and "another split, config or code" in caplog.text
    )
    assert "resuming" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train("split B")  # its own checkpoint, of its one finished epoch: nothing left to train
    assert "resuming after epoch 1" in caplog.text and "stage1 epoch" not in caplog.text
    caplog.clear()
    whole = (tmp_path / "stage1.safetensors").read_bytes()
    (tmp_path / "stage1.safetensors").write_bytes(whole[:100])  # cut short by a full disk
    with caplog.at_level(logging.INFO):
        train("split B")
    assert "ignoring the unreadable checkpoint" in caplog.text
    assert "stage1 epoch" in caplog.text  # trained from the start
