"""The cluster tests' Snakemake runs (tests/test_slurm.py), started in the background as the
session starts, when those tests are selected.

A run on Slurm spends most of its time waiting: on the queue, and on the executor plugin's
status checks, which it spaces out by 10 s more after each check that finds nothing finished
(a 5-second job is noticed after 14 s). Started first, the two runs' jobs use the CPU that
the rest of the suite leaves, and the cluster tests find them finished or nearly so.
"""

import contextlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

from .tiny_pipeline import EXPERIMENTS, tiny_config, write_photos
from .workflow import REPO, snakemake_command, write_config

CLUSTER = REPO / ".ci/slurm-cluster"
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
# job within 30 s of its limit); the retry has 10 minutes. The norms train, as fastai's freeze
# does, so that an epoch is 3.9 s at 128 px.
TIME_LIMIT_PHOTOS, TIME_LIMIT_EPOCHS = 60, 30
TIME_LIMIT = ("--set-resources", "train_stage1:runtime=1+9*(attempt>1)")
TIME_LIMIT_TARGET = "results/train/stage1/model.safetensors"
RUN_SECONDS = 900


class InBackground:
    """Commands run one after the other on a thread; `result()` waits for the last one."""

    def __init__(self, *commands: list[str]):
        self.results: list[subprocess.CompletedProcess] = []
        self.thread = threading.Thread(target=self.run, args=(commands,), daemon=True)
        self.thread.start()

    def run(self, commands) -> None:
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS)
            self.results.append(done)
            if done.returncode != 0:
                return

    def result(self) -> subprocess.CompletedProcess:
        self.thread.join(RUN_SECONDS)
        if self.thread.is_alive():
            raise AssertionError(f"the run did not end within {RUN_SECONDS} s")
        last = self.results[-1]
        if last.returncode != 0:
            raise AssertionError(f"snakemake failed:\n{last.stdout}\n{last.stderr}")
        return last


class SlurmRuns:
    """The runs by name, with their working folders; or why there are none here."""

    def __init__(self, skip_reason: str | None = None):
        self.skip_reason = skip_reason
        self.workdirs: dict[str, Path] = {}
        self.runs: dict[str, InBackground] = {}

    def start(self, name: str, workdir: Path, *commands: list[str]) -> None:
        self.workdirs[name] = workdir
        self.runs[name] = InBackground(*commands)

    def finished(self, name: str) -> Path:
        """The run's working folder once it has finished; its failure fails the caller."""
        self.runs[name].result()
        return self.workdirs[name]


def pipeline(workdir: Path) -> list[list[str]]:
    """The tiny pipeline with experiments, every rule but the local ones a Slurm job."""
    write_photos(workdir)
    write_config(workdir, tiny_config(experiments=EXPERIMENTS))
    return [snakemake_command(workdir, *SLURM_RUN)]


def time_limited_stage(workdir: Path) -> list[list[str]]:
    """The data stages here, then a stage 1 on Slurm longer than its first attempt's limit."""
    write_photos(workdir, per_class=TIME_LIMIT_PHOTOS)
    config = tiny_config(
        model={"image_size": 128, "batch_size": 8},
        train_stage1={"epochs": TIME_LIMIT_EPOCHS, "max_lr": 1e-2, "train_body_norms": True},
        final_model="stage1",
        predict={"folder": None},
    )
    write_config(workdir, config)
    return [
        snakemake_command(workdir, "--cores", "2", "--until", "split", "pack"),
        # set-resources takes what follows it: the target comes first
        snakemake_command(workdir, *SLURM_RUN, TIME_LIMIT_TARGET, *TIME_LIMIT),
    ]


@contextlib.contextmanager
def started(tmp_path_factory):
    """The cluster started (and stopped after, if it was not running) and both runs begun;
    SlurmRuns with a skip reason where Slurm cannot run here."""
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        yield SlurmRuns("Slurm is not installed here: `.ci/slurm-cluster install` installs it")
        return
    if os.geteuid() != 0:
        yield SlurmRuns("starting munged and slurmd needs root")
        return
    cluster = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, check=True)
    runs = SlurmRuns()
    try:
        for name, commands in [("pipeline", pipeline), ("time_limit", time_limited_stage)]:
            workdir = tmp_path_factory.mktemp(name)
            runs.start(name, workdir, *commands(workdir))
        yield runs
    finally:
        for run in runs.runs.values():
            run.thread.join(RUN_SECONDS)
        if "already running" not in cluster.stdout:
            subprocess.run([CLUSTER, "stop"], check=True)
