"""Faults of the machine in a real run: a full disk, damaged intermediate files, two runs at
once. Each stops the run with one line that names the file and the fix, and the fix works."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .tiny_pipeline import ONE_THREAD_A_JOB, tiny_config, write_photos
from .workflow import HOLD_RUN_LOCK, snakemake, snakemake_command, write_config


def data_set(workdir: Path) -> list[tuple[str, str]]:
    manifest = pd.read_csv(workdir / "results/verify/manifest.csv")
    return sorted(zip(manifest["id"], manifest["label"], strict=True))


def error_line(result: subprocess.CompletedProcess, text: str) -> str:
    """The one error message with `text` that a failed run printed (the job printed it and
    Snakemake, showing the failed job's log, again), with no traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = {line.split("CRITICAL imgclf: ")[-1] for line in output.splitlines() if text in line}
    assert len(lines) == 1, output
    return lines.pop()


def test_a_full_disk_stops_download_and_the_rerun_ends_with_the_whole_data_set(tmpfs, tmp_path):
    clean = tmp_path / "clean"
    write_photos(clean)
    write_config(clean, tiny_config())
    snakemake(clean, "--cores", "2", "--until", "verify")

    full = tmp_path / "full"
    write_photos(full)
    write_config(full, tiny_config())
    store = tmpfs(full / "results/download", "96k")  # room for about half the photos
    failed = snakemake(full, "--cores", "2", "--until", "verify", check=False)
    assert failed.returncode != 0
    line = error_line(failed, "cannot write to")
    assert f"{store}/" in line or "results/download/" in line
    assert "No space left on device" in line and "free" in line
    kept = len(list(store.glob("*/*.png")))
    assert 0 < kept < 36

    tmpfs(store, "4m")
    snakemake(full, "--cores", "2", "--until", "verify")  # the same command, after the fix
    assert data_set(full) == data_set(clean)
    summary = pd.read_csv(full / "results/verify/summary.csv")
    assert (summary["kept"] == 12).all()


def test_a_damaged_verified_image_is_named_and_its_rebuild_command_works(tmp_path):
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config())
    snakemake(tmp_path, "--cores", "2", "--until", "verify")
    damaged = sorted((tmp_path / "results/verify/images").iterdir())[5]
    damaged.write_bytes(damaged.read_bytes()[:100])
    failed = snakemake(tmp_path, "--cores", "2", "--until", "pack", check=False)
    assert failed.returncode != 0
    line = error_line(failed, "is damaged")
    assert f"results/verify/images/{damaged.name} is damaged" in line
    assert line.endswith("rebuild it: snakemake --cores all --forcerun verify")
    snakemake(tmp_path, "--cores", "2", "--until", "pack", "--forcerun", "verify")


def test_damaged_weights_stop_the_next_stage_before_it_trains(trained_copy):
    weights = trained_copy / "results/train/stage1/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    failed = snakemake(
        trained_copy,
        *ONE_THREAD_A_JOB,
        "--until",
        "finetune_stage2",
        "--forcerun",
        "finetune_stage2",
        check=False,
    )
    assert failed.returncode != 0
    line = error_line(failed, "is damaged")
    assert "results/train/stage1/model.safetensors is damaged (unreadable weights" in line
    assert line.endswith("--forcerun train_stage1")
    assert "stage2 epoch" not in failed.stdout + failed.stderr
    snakemake(
        trained_copy, *ONE_THREAD_A_JOB, "--until", "finetune_stage2", "--forcerun", "train_stage1"
    )


@pytest.mark.parametrize("trial", range(2))
def test_two_runs_started_together_in_one_folder_are_one_run_and_one_refusal(tmp_path, trial):
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config())
    command = snakemake_command(tmp_path, "--cores", "1", "--until", "verify")
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(code == 0 for code in codes) == [False, True], outputs
    refused = outputs[codes.index(max(codes))]
    # Snakemake's own lock refuses the runs that start apart, imgclf's those that pass it
    # together.
    assert (
        "another snakemake run is working in" in refused or "Directory cannot be locked" in refused
    ), refused
    assert len(data_set(tmp_path)) == 36


def test_a_run_that_passes_snakemakes_lock_still_meets_the_workflows(tmp_path):
    """Two runs that start within the same moment both pass Snakemake's lock (which checks,
    then writes); the workflow's own lock, held here by another process, still refuses one."""
    write_photos(tmp_path)
    write_config(tmp_path, tiny_config())
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_LOCK], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        refused = snakemake(tmp_path, "--cores", "1", "--until", "verify", check=False)
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode != 0
    assert f"another snakemake run is working in {tmp_path} (process {holder.pid}," in (
        refused.stdout + refused.stderr
    )
    assert not (tmp_path / "results/verify").exists()
    snakemake(tmp_path, "--cores", "1", "--until", "verify")  # the holder gone, the lock too
