"""The whole workflow on a real single-node Slurm cluster (.ci/slurm-cluster), as on a site.

Skipped, with the reason, only where Slurm's daemons are not installed or cannot be started
(they need root); `.ci/run` installs and starts them.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from imgclf.files import read_csv

from .tiny_pipeline import EXPERIMENTS, tiny_config, write_photos
from .workflow import REPO, snakemake, write_config

CLUSTER = REPO / ".ci/slurm-cluster"
SLURM_DIR = os.environ.get("IMGCLF_SLURM_DIR", "/tmp/imgclf-slurm")
# Fast status checks for a test; squeue because this cluster has no accounting database.
SLURM_RUN = (
    "--workflow-profile", str(REPO / "profiles/slurm"),
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "2",  # not 10: a test's jobs take seconds
    "--slurm-keep-successful-logs",
    "--max-threads", "1",  # as ONE_THREAD_A_JOB: two jobs at once on the node's two CPUs
)  # fmt: skip
# A stage of about 2 minutes on one CPU, past the first attempt's 1-minute limit (Slurm stops a
# job within 30 s of its limit); the retry has 10 minutes.
TIME_LIMIT_PHOTOS, TIME_LIMIT_EPOCHS = 60, 30  # 3.9 s an epoch at 128 px
TIME_LIMIT = ("--set-resources", "train_stage1:runtime=1+9*(attempt>1)")
LOCAL_RULES = {"fetch_urls", "download", "choose_experiment", "overview", "all"}
pytestmark = pytest.mark.timeout(900)  # a whole pipeline through Slurm's queue


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("Slurm is not installed here: `.ci/slurm-cluster install` installs it")
    if os.geteuid() != 0:
        pytest.skip("starting munged and slurmd needs root")
    started = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, check=True)
    yield
    if "already running" not in started.stdout:
        subprocess.run([CLUSTER, "stop"], check=True)


def finished_jobs(workdir) -> dict[str, str]:
    """Slurm's own record (jobcomp.log) of the jobs that ran in `workdir`: id -> state."""
    jobs = {}
    for line in Path(SLURM_DIR, "jobcomp.log").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs[fields["JobId"]] = fields["JobState"]
    return jobs


def slurm_logs(workdir) -> dict[str, set[str]]:
    """The plugin's log folders: rule (or group) name -> the Slurm job ids that ran it."""
    logs = {}
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        name = log.relative_to(workdir / ".snakemake/slurm_logs").parts[0]
        logs.setdefault(re.sub(r"^(rule|group)_", "", name), set()).add(log.stem)
    return logs


@pytest.fixture(scope="module")
def on_slurm(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    write_photos(workdir)
    write_config(workdir, tiny_config(experiments=EXPERIMENTS))
    snakemake(workdir, *SLURM_RUN)
    return workdir


def test_every_rule_but_the_local_ones_ran_as_a_slurm_job(on_slurm):
    logs = slurm_logs(on_slurm)
    assert set(logs) == {
        "verify",
        "features",
        "pack",
        "split",
        "audit",
        "lr_find",
        "train_stage1",
        "finetune_stage2",
        "interpret",
        "compare",
        "deliver_export",
        "deliver_predict",
    }
    # Each experiment's training is a job of its own: base trains both stages, the other one.
    assert len(logs["train_stage1"]) == len(logs["interpret"]) == len(logs["deliver_export"]) == 2
    assert len(logs["lr_find"]) == 3 and len(logs["finetune_stage2"]) == 1
    assert len(logs["pack"]) == 2  # the experiments' two image sizes
    jobs = finished_jobs(on_slurm)
    ran = set().union(*logs.values())
    assert ran <= set(jobs) and {jobs[job] for job in ran} == {"COMPLETED"}
    assert not LOCAL_RULES & set(logs)
    for output in [
        "results/experiments/lite1_head_only/interpret/metrics.json",
        "results/compare/leaderboard.csv",
        "results/export/model.onnx",
        "results/predict/predictions.csv",
    ]:
        assert (on_slurm / output).stat().st_size > 0


def test_the_outputs_equal_those_of_a_local_run(on_slurm, trained):
    base = "results/experiments/base"
    for table, local in [
        ("results/split/split.csv", "results/split/split.csv"),
        (f"{base}/interpret/confusion_matrix.csv", "results/interpret/confusion_matrix.csv"),
    ]:
        pd.testing.assert_frame_equal(read_csv(on_slurm / table), read_csv(trained / local))
    for stage in ["stage1", "stage2"]:
        history = f"train/{stage}/history.csv"
        columns = ["train_loss", "valid_loss", "error_rate"]
        pd.testing.assert_frame_equal(
            pd.read_csv(on_slurm / base / history)[columns],
            pd.read_csv(trained / "results" / history)[columns],
        )


def test_a_failing_job_is_reported_and_the_run_fails(on_slurm, tmp_path):
    workdir = tmp_path / "slurm"
    shutil.copytree(on_slurm, workdir, symlinks=True)  # so only the broken experiment reruns
    experiments = {**EXPERIMENTS, "lite1_head_only": {"train_stage1": {"max_lr": 1.0e30}}}
    write_config(workdir, tiny_config(experiments=experiments))
    result = snakemake(workdir, *SLURM_RUN, "--retries", "0", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Error in rule train_stage1" in output and "stage1: the loss became" in output
    failed = slurm_logs(workdir)["train_stage1"] - slurm_logs(on_slurm)["train_stage1"]
    assert len(failed) == 1
    assert {finished_jobs(workdir)[job] for job in failed} == {"FAILED"}


def test_a_stage_past_its_time_limit_is_resubmitted_and_resumes(cluster, tmp_path):
    """Slurm stops train_stage1 at its time limit (1 minute); Snakemake resubmits it, as the
    profile's retries say, and the retry resumes from the checkpoint of its last finished
    epoch instead of starting again."""
    write_photos(tmp_path, per_class=TIME_LIMIT_PHOTOS)
    config = tiny_config(
        model={"image_size": 128, "batch_size": 8},
        train_stage1={"epochs": TIME_LIMIT_EPOCHS, "max_lr": 1e-2},
        final_model="stage1",
        predict={"folder": None},
    )
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "--until", "split", "pack")  # on Slurm: the stage
    target = "results/train/stage1/model.safetensors"
    snakemake(tmp_path, *SLURM_RUN, target, *TIME_LIMIT)  # set-resources takes what follows
    attempts = sorted(slurm_logs(tmp_path)["train_stage1"], key=int)
    states = [finished_jobs(tmp_path)[job] for job in attempts]
    assert states == ["TIMEOUT", "COMPLETED"], states
    log = (tmp_path / "logs/train_stage1/train_stage1.log").read_text()
    resumed = re.search(r"resuming after epoch (\d+), the last one finished", log)
    assert resumed and 1 <= int(resumed[1]) < TIME_LIMIT_EPOCHS
    history = pd.read_csv(tmp_path / "results/train/stage1/history.csv")
    assert history["epoch"].tolist() == list(range(1, TIME_LIMIT_EPOCHS + 1))
    assert not (tmp_path / "results/checkpoints/stage1.safetensors").exists()
