"""The whole workflow on a real single-node Slurm cluster (.ci/slurm-cluster), as on a site.

Skipped, with the reason, only where Slurm's daemons are not installed or cannot be started
(they need root); `.ci/run` installs and starts them. The runs that most tests check begin in
the background when the session starts (tests/slurm_runs.py).
"""

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from imgclf.files import read_csv

from .slurm_runs import SLURM_RUN, TIME_LIMIT_EPOCHS
from .tiny_pipeline import EXPERIMENTS, tiny_config
from .workflow import snakemake, write_config

SLURM_DIR = os.environ.get("IMGCLF_SLURM_DIR", "/tmp/imgclf-slurm")
LOCAL_RULES = {"fetch_urls", "download", "choose_experiment", "overview", "all"}
pytestmark = pytest.mark.timeout(900)  # a whole pipeline through Slurm's queue


@pytest.fixture(scope="module")
def cluster(slurm_runs):
    if slurm_runs.skip_reason:
        pytest.skip(slurm_runs.skip_reason)
    return slurm_runs


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
def on_slurm(cluster):
    return cluster.finished("pipeline")


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


def test_a_stage_past_its_time_limit_is_resubmitted_and_resumes(cluster):
    """Slurm stops train_stage1 at its time limit (1 minute); Snakemake resubmits it, as the
    profile's retries say, and the retry resumes from the checkpoint of its last finished
    epoch instead of starting again."""
    workdir = cluster.finished("time_limit")
    attempts = sorted(slurm_logs(workdir)["train_stage1"], key=int)
    states = [finished_jobs(workdir)[job] for job in attempts]
    assert states == ["TIMEOUT", "COMPLETED"], states
    log = (workdir / "logs/train_stage1/train_stage1.log").read_text()
    resumed = re.search(r"resuming after epoch (\d+), the last one finished", log)
    assert resumed and 1 <= int(resumed[1]) < TIME_LIMIT_EPOCHS
    history = pd.read_csv(workdir / "results/train/stage1/history.csv")
    assert history["epoch"].tolist() == list(range(1, TIME_LIMIT_EPOCHS + 1))
    assert not (workdir / "results/checkpoints/stage1.safetensors").exists()
