"""Units of interpret: which stage goes forward, and the tables of the diagnosis."""

import json

import numpy as np
import pandas as pd
import pytest

from imgclf.interpret import (
    class_report,
    confusion,
    most_confused,
    prediction_table,
    review_table,
)
from imgclf.job import choose_model
from imgclf.stages import versus_stage1

CLASSES = ["ant", "bee", "wasp"]


def write_stages(tmp_path, stage1_loss, stage2_loss) -> list[str]:
    files = []
    for stage, loss in [("stage1", stage1_loss), ("stage2", stage2_loss)]:
        folder = tmp_path / stage
        folder.mkdir()
        meta = {"stage": stage, "metrics": {"valid_loss": loss}}
        (folder / "model.json").write_text(json.dumps(meta))
        files += [str(folder / "model.json"), str(folder / "model.safetensors")]
    return files


def test_final_model_names_a_stage_or_takes_the_lower_validation_loss(tmp_path):
    files = write_stages(tmp_path, stage1_loss=0.30, stage2_loss=0.40)
    assert choose_model("stage2", files[2:]).stage == "stage2"
    chosen = choose_model("stage1", files[:2])
    assert chosen.weights == tmp_path / "stage1/model.safetensors"
    assert chosen.reason == "final_model is stage1"
    best = choose_model("best", files)
    assert best.stage == "stage1" and "stage1 0.3000, stage2 0.4000" in best.reason


def test_best_prefers_stage1_on_a_tie(tmp_path):
    assert choose_model("best", write_stages(tmp_path, 0.25, 0.25)).stage == "stage1"


@pytest.mark.parametrize("stage2_loss, worse", [(0.32, False), (0.34, True), (4.0, True)])
def test_a_stage2_that_made_things_worse_is_said_so(stage2_loss, worse, caplog):
    stage1 = {"valid_loss": 0.30, "error_rate": 0.10, "accuracy": 0.90}
    stage2 = {"valid_loss": stage2_loss, "error_rate": 0.12, "accuracy": 0.88}
    versus = versus_stage1(stage1, stage2)
    assert versus == {"stage1": stage1, "stage2": stage2, "worse": worse}
    assert ("stage2 made the model worse" in caplog.text) == worse


def test_every_final_model_carries_stage2s_comparison_when_stage2_was_trained(tmp_path):
    files = write_stages(tmp_path, stage1_loss=0.30, stage2_loss=0.40)
    meta = json.loads((tmp_path / "stage2/model.json").read_text())
    meta["versus_stage1"] = {"worse": True}
    (tmp_path / "stage2/model.json").write_text(json.dumps(meta))
    assert choose_model("best", files).versus_stage1 == {"worse": True}
    assert choose_model("stage2", files[2:]).versus_stage1 == {"worse": True}
    assert choose_model("stage1", files[:2]).versus_stage1 is None


@pytest.fixture
def predictions():
    split = pd.DataFrame(
        {
            "id": [f"{index:016x}" for index in range(6)],
            "path": [f"images/{index}.png" for index in range(6)],
            "label": ["ant", "ant", "bee", "bee", "wasp", "wasp"],
            "is_valid": [True, True, True, True, True, False],
        }
    )
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],  # right
            [0.2, 0.7, 0.1],  # ant seen as bee
            [0.1, 0.8, 0.1],  # right
            [0.6, 0.3, 0.1],  # bee seen as ant
            [0.1, 0.6, 0.3],  # wasp seen as bee
            [0.05, 0.05, 0.9],  # right, training image
        ]
    )
    return prediction_table(split, np.log(probabilities), CLASSES)


def test_prediction_table_has_the_loss_and_the_predicted_probability(predictions):
    assert list(predictions["predicted"]) == ["ant", "bee", "bee", "ant", "bee", "wasp"]
    assert predictions["loss"].to_numpy() == pytest.approx(-np.log([0.8, 0.2, 0.8, 0.3, 0.3, 0.9]))
    assert predictions["probability"].to_numpy() == pytest.approx([0.8, 0.7, 0.8, 0.6, 0.6, 0.9])


def test_confusion_matrix_and_most_confused_count_validation_images(predictions):
    valid = predictions[predictions["is_valid"]]
    matrix = confusion(valid, CLASSES)
    assert matrix.loc["ant"].tolist() == [1, 1, 0]
    assert matrix.loc["bee"].tolist() == [1, 1, 0]
    assert matrix.loc["wasp"].tolist() == [0, 1, 0]
    pairs = most_confused(matrix, min_val=1)
    assert pairs.values.tolist() == [["ant", "bee", 1], ["bee", "ant", 1], ["wasp", "bee", 1]]
    assert most_confused(matrix, min_val=2).empty


def test_class_report_gives_precision_recall_and_f1(predictions):
    report = class_report(predictions[predictions["is_valid"]], CLASSES).set_index("class")
    assert report.loc["bee", "precision"] == pytest.approx(1 / 3)
    assert report.loc["bee", "recall"] == pytest.approx(1 / 2)
    assert report.loc["wasp"].tolist() == [0, 0, 0, 1]  # never predicted: 0, not an error


def test_review_lists_the_highest_losses_over_train_and_valid_when_the_audit_finds_nothing(
    predictions,
):
    clean = pd.DataFrame(
        {"id": predictions["id"], "issue": "", "suggested": "", "confident": "False"}
    )
    review = review_table(predictions, clean, rows=3)
    assert set(review["issue"]) == {"top_loss"} and set(review["suggested"]) == {""}
    assert review["loss"].is_monotonic_decreasing and len(review) == 3
    assert set(review["decision"]) == {""}
    assert review["id"].iloc[0] == predictions["id"][1]  # probability 0.2 of its label
