"""Units of interpret: which stage goes forward, the tables of the diagnosis, the review queue."""

import json

import numpy as np
import pandas as pd
import pytest

from imgclf.interpret import (
    REVIEW_COLUMNS,
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


IDS = [f"{index:016x}" for index in range(10)]


def predictions_of(count, model_probability, is_valid):
    """The final model's predictions of `count` images labelled ant, given the probability it
    gives that label."""
    return pd.DataFrame(
        {
            "id": IDS[:count],
            "path": IDS[:count],
            "label": "ant",
            "is_valid": is_valid,
            "predicted": "ant",
            "loss": -np.log(model_probability),
            "probability": 0.9,
        }
    )


def unflagged_audit(count, audit_probability):
    """The audit of those images when it flags none, given its probability of their label."""
    return pd.DataFrame(
        {
            "id": IDS[:count],
            "issue": "",
            "suggested": "",
            "confident": "False",
            "given_probability": audit_probability,
        }
    )


def test_the_review_queue_puts_the_surest_finds_first_then_the_least_likely_labels():
    predictions = predictions_of(7, model_probability=0.9, is_valid=False)
    audit_table = pd.DataFrame(
        {
            "id": [IDS[2], IDS[3], IDS[6], IDS[5], IDS[0], IDS[1], IDS[4]],
            "issue": ["label", "near_duplicate", "label", "outlier", "", "", ""],
            "suggested": ["bee", "bee", "wasp", "", "", "", ""],
            "confident": ["True", "False", "False", "False", "False", "False", "False"],
            "given_probability": [0.05, 0.6, 0.3, 0.8, 0.2, 0.9, 0.5],
        }
    )
    queue = review_table(predictions, audit_table, rows=2)
    assert list(queue.columns) == [*REVIEW_COLUMNS, "decision"]
    # The sure finds in the audit's order, then by the audit's probability of the label (no
    # validation image here): every flagged image, and `rows` unflagged ones.
    assert queue["id"].tolist() == [IDS[2], IDS[3], IDS[0], IDS[6], IDS[4], IDS[5]]
    assert queue["issue"].tolist() == [
        *("label", "near_duplicate", "top_loss", "label", "top_loss", "outlier")
    ]
    assert queue["suggested"].tolist() == ["bee", "bee", "", "wasp", "", ""]
    assert set(queue["decision"]) == {""}


KNOWING = [0.9] * 8 + [0.05, 0.2]  # two wrong labels, told apart from the right ones
GUESSING = [0.6, 0.4] * 5  # no better than a coin


def test_validation_images_are_queued_by_the_model_that_predicts_them_better():
    for model_probability, audit_probability in [(KNOWING, GUESSING), (GUESSING, KNOWING)]:
        queue = review_table(
            predictions_of(10, model_probability, is_valid=True),
            unflagged_audit(10, audit_probability),
            rows=2,
        )
        assert queue["id"].tolist() == [IDS[8], IDS[9]]
        assert queue["issue"].tolist() == ["top_loss", "top_loss"]


def test_a_training_label_the_final_model_could_not_learn_is_doubted_one_it_learned_is_not():
    # On the validation images (the first two) the final model is surer of the labels than
    # the audit, so the mixture weighs the final model alone.
    queue = review_table(
        predictions_of(4, [0.95, 0.9, 0.05, 0.99], is_valid=[True, True, False, False]),
        unflagged_audit(4, [0.5, 0.5, 0.6, 0.3]),
        rows=4,
    )
    # IDS[2]: trained on its label, the final model still gives it 0.05. IDS[3]: the model
    # learned its label (0.99), which does not outweigh the audit's doubt (0.3).
    assert queue["id"].tolist() == [IDS[2], IDS[3], IDS[1], IDS[0]]
