"""The cleaning loop: a review's decisions into the labels file, checked before writing."""

import signal
import subprocess
import sys

import pandas as pd
import pytest

from imgclf.files import read_csv, write_csv
from imgclf.review import ReviewError, apply_review, main

CLASSES = ["ant", "bee"]
IDS = [f"{index:016x}" for index in range(4)]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame(
        {"id": IDS, "path": [f"{i}.png" for i in IDS], "label": ["ant", "ant", "bee", "bee"]}
    ).to_csv("manifest.csv", index=False)
    (tmp_path / "config.yaml").write_text(
        "classes:\n  ant: {folder: .}\n  bee: {folder: .}\nlabels: my_labels.csv\n"
    )
    return tmp_path


def write_review(decisions: dict[str, str], path="review.csv") -> str:
    pd.DataFrame({"id": list(decisions), "loss": 1.0, "decision": list(decisions.values())}).to_csv(
        path, index=False
    )
    return path


def apply(decisions):
    return apply_review(write_review(decisions), "my_labels.csv", "manifest.csv", CLASSES)


def test_relabel_drop_and_keep(workdir):
    outcome = apply({IDS[0]: "bee", IDS[1]: "drop", IDS[2]: "keep", IDS[3]: ""})
    assert (outcome.relabelled, outcome.dropped, outcome.unchanged) == (1, 1, 0)
    labels = read_csv("my_labels.csv")
    assert labels.values.tolist() == [[IDS[0], "bee"], [IDS[1], "drop"]]


def test_applying_twice_changes_nothing_more(workdir):
    apply({IDS[0]: "bee", IDS[1]: "drop"})
    before = (workdir / "my_labels.csv").stat().st_mtime_ns
    outcome = apply({IDS[0]: "bee", IDS[1]: "drop"})
    assert (outcome.relabelled, outcome.dropped, outcome.unchanged) == (0, 0, 2)
    assert (workdir / "my_labels.csv").stat().st_mtime_ns == before


def test_existing_labels_are_kept_and_updated_in_place(workdir):
    pd.DataFrame({"id": [IDS[3], IDS[0]], "label": ["ant", "bee"]}).to_csv(
        "my_labels.csv", index=False
    )
    apply({IDS[0]: "ant", IDS[2]: "ant"})
    labels = read_csv("my_labels.csv")
    assert labels.values.tolist() == [[IDS[3], "ant"], [IDS[0], "ant"], [IDS[2], "ant"]]


@pytest.mark.parametrize(
    ("decisions", "message"),
    [
        ({IDS[0]: "wasp"}, "decisions must be a class (ant, bee), 'drop', 'keep' or empty"),
        ({"ffffffffffffffff": "bee"}, "1 id(s) of the review are not in the manifest"),
    ],
)
def test_a_bad_decision_is_an_error_and_nothing_is_written(workdir, decisions, message):
    with pytest.raises(ReviewError) as error:
        apply(decisions)
    assert message in str(error.value)
    assert not (workdir / "my_labels.csv").exists()


def test_two_decisions_for_one_image_are_an_error(workdir):
    pd.DataFrame({"id": [IDS[0], IDS[0]], "decision": ["bee", "drop"]}).to_csv(
        "review.csv", index=False
    )
    with pytest.raises(ReviewError, match="different decisions for the same id"):
        apply_review("review.csv", "my_labels.csv", "manifest.csv", CLASSES)


def test_a_review_without_a_decision_column_is_an_error(workdir):
    pd.DataFrame({"id": [IDS[0]], "label": ["bee"]}).to_csv("review.csv", index=False)
    with pytest.raises(ReviewError, match="lacks column"):
        apply_review("review.csv", "my_labels.csv", "manifest.csv", CLASSES)


def test_the_command_reads_classes_and_labels_file_from_the_config(workdir, capsys):
    write_review({IDS[1]: "bee"})
    assert main(["review.csv", "--manifest", "manifest.csv"]) == 0
    assert "my_labels.csv: 1 relabelled" in capsys.readouterr().out
    assert read_csv("my_labels.csv").values.tolist() == [[IDS[1], "bee"]]
    with pytest.raises(SystemExit):
        main(["missing.csv", "--manifest", "manifest.csv"])
    assert "missing.csv does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        (b'id,decision\n"0000000000000001,bee\n', "review.csv is not a readable CSV table"),
        (b"", "review.csv is empty"),
        (
            "id,decision\n0000000000000001,abeille\xe9\n".encode("latin-1"),
            "review.csv is not UTF-8 text",
        ),
    ],
)
def test_a_broken_review_or_labels_file_is_one_line_naming_it(workdir, capsys, content, message):
    (workdir / "review.csv").write_bytes(content)
    assert main(["review.csv", "--manifest", "manifest.csv"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message}") and error.count("\n") == 1
    write_review({IDS[1]: "bee"})
    (workdir / "my_labels.csv").write_bytes(content.replace(b"decision", b"label"))
    assert main(["review.csv", "--manifest", "manifest.csv"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {message.replace('review', 'my_labels')}")


WRITER = """
import sys
import pandas as pd
from imgclf.labels import write_decisions
manifest = pd.read_csv("manifest.csv", dtype=str)
for image_id in sys.argv[1:]:
    write_decisions("my_labels.csv", manifest, {image_id: "bee"}, ["ant", "bee"])
"""


def test_two_writers_of_the_labels_file_lose_no_decision(workdir):
    """The cleaner and `python -m imgclf.review` at once: each reads, changes and writes."""
    ids = [f"{index:016x}" for index in range(80)]
    pd.DataFrame({"id": ids, "path": [f"{i}.png" for i in ids], "label": "ant"}).to_csv(
        "manifest.csv", index=False
    )
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, *ids[start::2]]) for start in (0, 1)]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    assert sorted(read_csv("my_labels.csv")["id"]) == ids
    assert not list(workdir.glob(".*.part"))


KILLED_WRITER = """
import os, sys, time
from imgclf.files import atomic_path
with atomic_path("table.csv") as tmp:
    tmp.write_text("half of a ")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file_and_no_part_behind(workdir):
    write_csv("table.csv", pd.DataFrame({"a": [1]}))
    with subprocess.Popen([sys.executable, "-c", KILLED_WRITER], stdout=subprocess.PIPE) as writer:
        assert writer.stdout.readline() == b"writing\n"
        writer.send_signal(signal.SIGKILL)
    assert read_csv("table.csv").values.tolist() == [["1"]]
    write_csv("table.csv", pd.DataFrame({"a": [2]}))
    assert read_csv("table.csv").values.tolist() == [["2"]]
    assert not list(workdir.glob(".*.part"))
