"""interpret: where the model goes wrong (fastai's ClassificationInterpretation)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .audit import LABEL, NEAR_DUPLICATE, TOP_LOSS
from .job import ChosenModel, Job
from .models import folded_for_inference
from .plots import plot_confusion_matrix, plot_image_grid
from .split import read_split
from .train import forward_batches

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["id", "path", "label", "is_valid", "predicted", "loss", "probability"]
REVIEW_COLUMNS = [*PREDICTION_COLUMNS[:4], "issue", "suggested", *PREDICTION_COLUMNS[4:]]


@dataclass
class InterpretSettings:
    """The `interpret` section of config.yaml."""

    min_val: int
    top_losses: int
    review: int


@dataclass
class Diagnosis:
    """Where the chosen model goes wrong, as interpret's rule writes it."""

    confusion: pd.DataFrame  # actual (rows, the index) against predicted (columns)
    confusion_plot: Figure
    most_confused: pd.DataFrame
    per_class: pd.DataFrame
    metrics: dict
    top_losses: Figure
    review: pd.DataFrame


def log_probabilities(
    model: torch.nn.Module, images: Sequence[torch.Tensor], batch_size: int, device: torch.device
) -> np.ndarray:
    """The model's log-probabilities (images x classes) for prepared uint8 images."""
    outputs = forward_batches(folded_for_inference(model), images, batch_size, device)
    return outputs.log_softmax(1).numpy()


def prediction_table(
    split: pd.DataFrame, log_probs: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """Per image: its label, the predicted class, the loss and the predicted class's probability."""
    actual = split["label"].map({label: index for index, label in enumerate(classes)}).to_numpy()
    predicted = log_probs.argmax(1)
    rows = np.arange(len(split))
    return split.assign(
        predicted=[classes[index] for index in predicted],
        loss=-log_probs[rows, actual],
        probability=np.exp(log_probs[rows, predicted]),
    )[PREDICTION_COLUMNS]


def confusion(valid: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Counts of actual (rows) against predicted (columns) classes."""
    counts = confusion_matrix(valid["label"], valid["predicted"], labels=classes)
    return pd.DataFrame(counts, index=pd.Index(classes, name="actual"), columns=classes)


def most_confused(matrix: pd.DataFrame, min_val: int) -> pd.DataFrame:
    """Pairs (actual, predicted) of different classes seen at least min_val times, most first."""
    pairs = matrix.stack().rename("count").reset_index()
    pairs.columns = ["actual", "predicted", "count"]
    pairs = pairs[(pairs["actual"] != pairs["predicted"]) & (pairs["count"] >= min_val)]
    return pairs.sort_values(["count", "actual", "predicted"], ascending=[False, True, True])


def class_report(valid: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and the number of validation images, per class."""
    precision, recall, f1, support = precision_recall_fscore_support(
        valid["label"], valid["predicted"], labels=classes, zero_division=0
    )
    return pd.DataFrame(
        {"class": classes, "precision": precision, "recall": recall, "f1": f1, "images": support}
    )


def highest_losses(predictions: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The `rows` images of highest loss, ties in id order."""
    return predictions.sort_values(["loss", "id"], ascending=[False, True]).head(rows)


def held_out_probability(predictions: pd.DataFrame, audit: pd.DataFrame) -> pd.Series:
    """Per image (by id), the probability of its label under the evidence least biased by
    that label.

    Every image has the audit's out-of-fold probability; the final model's is a second
    opinion. The validation images, which the final model never saw, show how far to trust
    it: the two mix at the weight that gives them the lowest log loss (convex in the weight).
    On ants/bees that weight leaned on the audit (0.69-1.00 over five runs), on the demo's
    digits on the final model (0.09-0.24 over three). A training image's final-model
    probability is biased upwards, as the model learned its label, so it may add doubt (a
    label the model could not learn even so) but not remove it: the lower of the audit's and
    the mixture.
    """
    given = pd.merge(
        predictions[["id", "is_valid", "loss"]],
        audit[["id", "given_probability"]],
        on="id",
        validate="one_to_one",
    )
    audit_p = given["given_probability"].astype(float).to_numpy()
    model_p = np.exp(-given["loss"].astype(float).to_numpy())
    valid = given["is_valid"].astype(str).eq("True").to_numpy()

    def valid_log_loss(weight: float) -> float:
        mixed = weight * audit_p[valid] + (1 - weight) * model_p[valid]
        return float(-np.log(np.maximum(mixed, 1e-12)).mean())

    weight = (
        minimize_scalar(valid_log_loss, bounds=(0, 1), method="bounded").x if valid.any() else 1
    )
    log.info(
        "review: validation images weigh the audit %.2f, the final model %.2f", weight, 1 - weight
    )
    mixed = weight * audit_p + (1 - weight) * model_p
    return pd.Series(np.where(valid, mixed, np.minimum(audit_p, mixed)), index=given["id"])


def review_table(predictions: pd.DataFrame, audit: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The review queue, with the final model's prediction and an empty decision column.

    First the audit's surest finds, in its order: labels that confident learning counts as
    another class, and near-duplicates under different labels. Then every other image by the
    probability of its label under evidence that did not learn it (`held_out_probability`),
    lowest first: the audit's other doubted labels (`label`) and outliers where they fall, and
    `rows` more (`top_loss`). The final model's own losses miss the training set's wrong
    labels, which it has learned: on ants/bees with 5 % of labels flipped (seeds 0-4), twice
    as many entries as flipped held a median 0.55 of them by its losses (0.45-0.70) and 0.85
    in this order (0.80-0.95).
    """
    sure = (audit["issue"] == NEAR_DUPLICATE) | (
        (audit["issue"] == LABEL) & (audit["confident"].astype(str) == "True")
    )
    held_out = held_out_probability(predictions, audit)
    rest = audit[~sure].assign(held_out=audit.loc[~sure, "id"].map(held_out))
    rest = rest.sort_values(["held_out", "id"])
    unflagged = rest["issue"] == ""
    listed = rest[~unflagged | (unflagged.cumsum() <= rows)]
    queue = pd.concat([audit[sure], listed])[["id", "issue", "suggested"]]
    queue["issue"] = queue["issue"].replace("", TOP_LOSS)
    queue = queue.merge(predictions, on="id", how="left", validate="one_to_one")
    return queue[REVIEW_COLUMNS].assign(decision="")


def interpret(
    job: Job, chosen: ChosenModel, audit: pd.DataFrame, settings: InterpretSettings
) -> Diagnosis:
    """Predict every image of the split with the chosen model; diagnose its mistakes; queue
    the audit's issues and the highest losses for review."""
    device = job.setup()
    log.info("interpreting %s: %s", chosen.stage, chosen.reason)
    split = read_split(job.split)
    pack = job.open_pack()
    images = pack.squares(pack.positions(split["id"]))
    model = job.build(chosen.weights)
    log_probs = log_probabilities(model, images, job.model.batch_size, device)
    predictions = prediction_table(split, log_probs, job.classes)
    valid = predictions[predictions["is_valid"]]

    matrix = confusion(valid, job.classes)
    report = class_report(valid, job.classes)
    accuracy = float((valid["label"] == valid["predicted"]).mean())
    metrics = {
        "stage": chosen.stage,
        "reason": chosen.reason,
        "valid_images": len(valid),
        "valid_loss": float(valid["loss"].mean()),
        "accuracy": accuracy,
        "error_rate": 1 - accuracy,
        "per_class": report.set_index("class").to_dict(orient="index"),
        "stage2_versus_stage1": chosen.versus_stage1,
    }
    worst = highest_losses(valid, settings.top_losses)
    top_losses = plot_image_grid(
        [images[position].permute(1, 2, 0).numpy() for position in worst.index],
        [
            f"{row.predicted}/{row.label}\n{row.loss:.2f} / {row.probability:.2f}"
            for row in worst.itertuples()
        ],
        "prediction/actual, loss / probability of the prediction",
    )
    log.info(
        "%s: validation error rate %.4f over %d images", chosen.stage, 1 - accuracy, len(valid)
    )
    return Diagnosis(
        confusion=matrix,
        confusion_plot=plot_confusion_matrix(matrix, f"confusion matrix ({chosen.stage})"),
        most_confused=most_confused(matrix, settings.min_val),
        per_class=report,
        metrics=metrics,
        top_losses=top_losses,
        review=review_table(predictions, audit, settings.review),
    )
