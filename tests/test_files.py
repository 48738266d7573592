import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf.files import (
    DamagedFile,
    RunLock,
    RunLockError,
    TableError,
    WriteFailed,
    files_in,
    read_arrays,
    read_csv,
    read_json,
    write_arrays,
    write_bytes,
    write_json,
)
from imgclf.layout import RUN_LOCK, rule_writing

from .workflow import HOLD_RUN_LOCK, REPO


def test_a_full_disk_is_one_error_naming_the_folder_and_its_free_space(tmpfs, tmp_path):
    folder = tmpfs(tmp_path / "disk", "256k") / "results/verify/images"
    with pytest.raises(WriteFailed) as failed:
        for index in range(100):
            write_bytes(folder / f"{index}.jpg", os.urandom(20_000))
    message = str(failed.value)
    assert "\n" not in message
    assert str(folder) in message
    assert "No space left on device" in message
    assert "MB free" in message
    assert "rerun the same command" in message
    assert not list(folder.glob(".*.part")), "the temporary file of the failed write is left"


def test_a_read_only_disk_is_the_same_one_error(tmpfs, tmp_path):
    disk = tmpfs(tmp_path / "disk", "256k")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(WriteFailed, match=f"cannot write to {disk}/export: Read-only file system"):
        write_json(disk / "export/model.json", {"classes": ["a"]})


def test_a_written_file_gets_the_umask_as_any_program_s_would(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        before = os.umask(umask)
        try:
            write_json(tmp_path / f"{umask:o}.json", {"a": 1})
        finally:
            os.umask(before)
        assert stat.S_IMODE((tmp_path / f"{umask:o}.json").stat().st_mode) == mode


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("results/verify/images/0123.jpg", "verify"),
        ("results/verify/manifest.csv", "verify"),
        ("results/pack/224/images.u8", "pack"),
        ("results/train/stage1/model.safetensors", "train_stage1"),
        ("results/experiments/small/train/stage2/model.json", "finetune_stage2"),
        ("results/experiments/small/lr_find/stage1.json", "lr_find"),
        ("results/features/features.npz", "features"),
        ("results/download/cats/0123.jpg", "download"),
        ("labels.csv", None),
        ("photos/cats/1.jpg", None),
    ],
)
def test_each_result_is_traced_to_the_rule_that_rebuilds_it(path, rule):
    assert rule_writing(path) == rule


def test_every_output_of_the_workflow_is_traced_to_its_rule():
    """The folders in layout.WRITERS against the rules' outputs themselves."""
    outputs = []
    for rules_file in (REPO / "workflow/rules").glob("*.smk"):
        blocks = re.split(r"^\s*rule (\w+):", rules_file.read_text(), flags=re.MULTILINE)
        for name, block in zip(blocks[1::2], blocks[2::2], strict=True):
            outputs += [(name, text) for text in block.split("output:", 1)[-1].split('"')[1::2]]
    checked = 0
    for rule, path in outputs:
        if path.startswith("results/"):
            assert rule_writing(path.format(stage="stage1", size=32, cls="a")) == rule, path
            checked += 1
    assert checked > 20


def test_damaged_files_are_named_with_the_command_that_rebuilds_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("results/features")
    folder.mkdir(parents=True)
    write_arrays(folder / "features.npz", ids=np.array(["a"]))
    whole = (folder / "features.npz").read_bytes()
    (folder / "features.npz").write_bytes(whole[: len(whole) // 2])
    Path("results/lr_find").mkdir(parents=True)
    Path("results/lr_find/stage1.json").write_text('{"lr": 0.0')
    Path("results/verify").mkdir(parents=True)
    Path("results/verify/manifest.csv").write_bytes(b"id,label\n\xff\xfe,cat\n")
    for read, path, rule in (
        (read_arrays, "results/features/features.npz", "features"),
        (read_json, "results/lr_find/stage1.json", "lr_find"),
        (read_json, "results/train/stage1/model.json", "train_stage1"),  # missing
    ):
        with pytest.raises(DamagedFile, match=f"^{path} is damaged .*--forcerun {rule}$"):
            read(path)
    with pytest.raises(TableError, match="manifest.csv is not UTF-8.*--forcerun verify$"):
        read_csv("results/verify/manifest.csv")
    Path("labels.csv").write_bytes(b"id,label\n\xff\xfe,cat\n")  # the user's: no rule
    with pytest.raises(TableError, match="labels.csv is not UTF-8 .*save it as UTF-8$"):
        read_csv("labels.csv")


def test_special_entries_of_a_folder_are_listed_for_the_reader_to_refuse(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "zeros").symlink_to("/dev/zero")
    (tmp_path / ".hidden").write_bytes(b"")
    listed = sorted(Path(path).name for path in files_in([str(tmp_path)]))
    assert listed == ["loop", "photo.jpg", "pipe.jpg", "zeros"]


def test_a_second_run_lock_is_refused_naming_the_holder_and_freed_when_it_dies(
    tmp_path, monkeypatch
):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_LOCK], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        monkeypatch.chdir(tmp_path)
        with pytest.raises(RunLockError, match=rf"another snakemake run .*\(process {holder.pid},"):
            RunLock(RUN_LOCK).acquire()
    finally:
        holder.kill()  # a killed run leaves no stale lock behind
        holder.wait()
    RunLock(RUN_LOCK).acquire()
