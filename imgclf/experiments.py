"""Experiments side by side: the leaderboard of their results, its plots, and the experiment
whose export goes forward (`final_experiment`)."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .files import read_json
from .predict import Predictor

log = logging.getLogger(__name__)

LEADERBOARD_COLUMNS = [
    "experiment",
    "arch",
    "image_size",
    "stage",
    "error_rate",
    "valid_loss",
    "mean_f1",
    "worst_f1",
    "worst_class",
    "epochs",
    "train_seconds",
    "model_mb",
    "predict_images_per_s",
]


@dataclass
class Experiment:
    """What one experiment left: interpret's metrics, the trained stages' histories (stage 1
    first) and the export folder (model.onnx and model.json)."""

    name: str
    metrics: dict
    histories: list[pd.DataFrame]
    export: Path

    @property
    def epochs(self) -> pd.DataFrame:
        """Every trained epoch, stage 1's then stage 2's, numbered on from 1."""
        epochs = pd.concat(self.histories, ignore_index=True)
        return epochs.assign(epoch=range(1, len(epochs) + 1))


def predict_speed(export: Path, images: list[str], threads: int) -> float:
    """Images a second that the exported model classifies from files, as `imgclf.predict`
    does (decoding included), after one warm-up batch."""
    predictor = Predictor(export, threads)
    predictor.predict_files(images[:1])
    started = time.perf_counter()
    predictor.predict_files(images)
    return len(images) / (time.perf_counter() - started)


def leaderboard(experiments: list[Experiment], images: list[str], threads: int) -> pd.DataFrame:
    """One row per experiment, best first: the lowest validation error, then the lowest
    validation loss (many ties in error on a small validation set)."""
    rows = []
    for experiment in experiments:
        meta = read_json(experiment.export / "model.json")
        f1 = pd.Series(
            {name: scores["f1"] for name, scores in experiment.metrics["per_class"].items()}
        )
        epochs = experiment.epochs
        rows.append(
            {
                "experiment": experiment.name,
                "arch": meta["arch"],
                "image_size": meta["image_size"],
                "stage": experiment.metrics["stage"],
                "error_rate": experiment.metrics["error_rate"],
                "valid_loss": experiment.metrics["valid_loss"],
                "mean_f1": f1.mean(),
                "worst_f1": f1.min(),
                "worst_class": f1.idxmin(),
                "epochs": len(epochs),
                "train_seconds": epochs["seconds"].sum(),
                "model_mb": (experiment.export / meta["file"]).stat().st_size / 1e6,
                "predict_images_per_s": predict_speed(experiment.export, images, threads),
            }
        )
    board = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS).sort_values(
        ["error_rate", "valid_loss"], kind="stable", ignore_index=True
    )
    log.info("leaderboard:\n%s", board.to_string(index=False))
    return board


def choose_experiment(choice: str, board: pd.DataFrame) -> tuple[str, str]:
    """The experiment named by `final_experiment`, or `best`: the leaderboard's first; and why."""
    if choice != "best":
        return choice, f"final_experiment is {choice}"
    compared = ", ".join(
        f"{row.experiment} {row.error_rate:.2%} ({row.valid_loss:.4f})"
        for row in board.itertuples()
    )
    best = board["experiment"].iloc[0]
    return best, (
        f"final_experiment is best: {best} has the lowest validation error, then loss ({compared})"
    )
