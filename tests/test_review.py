"""The cleaning loop: a review's decisions into the labels file, checked before writing."""

import pandas as pd
import pytest

from imgclf.files import read_csv
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
