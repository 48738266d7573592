"""The workflow's figures, as matplotlib figures that the rules' scripts save with save_figure."""

import matplotlib

matplotlib.use("Agg")  # files only: jobs have no screen

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import atomic_path


def save_figure(figure: Figure, path) -> None:
    """Write a figure as PNG, atomically, and free it."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def plot_losses(history: pd.DataFrame, steps: pd.DataFrame, title: str) -> Figure:
    per_epoch = len(steps) / len(history)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(steps["step"], steps["loss"], alpha=0.4, label="train loss (batch)")
    axes.plot(history["epoch"] * per_epoch, history["valid_loss"], "o-", label="valid loss")
    axes.set(xlabel="step", ylabel="loss", title=title)
    axes.legend()
    return figure


def plot_schedule(steps: pd.DataFrame, title: str) -> Figure:
    figure, (rate, momentum) = plt.subplots(1, 2, figsize=(9, 3.5))
    rate.plot(steps["step"], steps["lr"])
    rate.set(xlabel="step", ylabel="learning rate (head)", title=title)
    momentum.plot(steps["step"], steps["momentum"], color="tab:orange")
    momentum.set(xlabel="step", ylabel="momentum (Adam beta1)")
    return figure


def plot_lr_find(table: pd.DataFrame, suggestions: dict, chosen: str, title: str) -> Figure:
    """Loss against rate (log scale), each suggestion marked, the one used larger."""
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(table["lr"], table["loss"], alpha=0.3, label="loss")
    axes.plot(table["lr"], table["smoothed_loss"], label="smoothed loss")
    for name, lr in suggestions.items():
        loss = np.interp(np.log(lr), np.log(table["lr"]), table["smoothed_loss"])
        used = name == chosen
        axes.plot(
            lr,
            loss,
            "o",
            markersize=9 if used else 5,
            label=f"{name}: {lr:.2e}" + (" (used)" if used else ""),
        )
    smoothed = table["smoothed_loss"].to_numpy()
    if len(smoothed):  # a loss that was not finite at the first rate leaves no curve
        # Clip the divergent end, as fastai does, so that the useful part of the curve shows.
        before_minimum = smoothed[: smoothed.argmin() + 1]
        top = max(before_minimum.max() * 1.2, smoothed.min() * 1.5)
        axes.set_ylim(smoothed.min() * 0.9, top)
    axes.set(xscale="log", xlabel="learning rate", ylabel="loss", title=title)
    axes.legend()
    return figure


def plot_image_grid(images: list[np.ndarray], titles: list[str], title: str) -> Figure:
    """Images (H, W, 3 uint8) in a grid of up to three columns, each with its title."""
    columns = min(3, len(images))
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, titles, strict=False):
        axis.imshow(image)
        axis.set_title(caption, fontsize=9)
    figure.suptitle(title)
    return figure


def plot_confusion_matrix(matrix: pd.DataFrame, title: str) -> Figure:
    """Counts of actual (rows) against predicted (columns) classes, as fastai draws it."""
    size = max(4, 0.6 * len(matrix) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix.to_numpy(), cmap="Blues")
    ticks = range(len(matrix))
    axes.set_xticks(ticks, matrix.columns, rotation=90)
    axes.set_yticks(ticks, matrix.index)
    darkest = matrix.to_numpy().max()
    for row, column in np.ndindex(matrix.shape):
        count = matrix.iat[row, column]
        axes.text(
            column,
            row,
            count,
            ha="center",
            va="center",
            color="white" if count > darkest / 2 else "black",
        )
    axes.set(xlabel="predicted", ylabel="actual", title=title)
    return figure


def plot_error_per_epoch(epochs: dict[str, pd.DataFrame]) -> Figure:
    """Each experiment's validation error at every epoch (`epochs`: name -> its epochs)."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, table in epochs.items():
        axes.plot(table["epoch"], table["error_rate"], "o-", label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(
        xlabel="epoch (stage 1's, then stage 2's)",
        ylabel="validation error rate",
        title="validation error per epoch",
    )
    axes.legend()
    return figure


def plot_error_versus_time(board: pd.DataFrame) -> Figure:
    """The leaderboard's final error of each experiment against its training seconds."""
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.scatter(board["train_seconds"], board["error_rate"])
    for row in board.itertuples():
        axes.annotate(row.experiment, (row.train_seconds, row.error_rate), fontsize=8)
    axes.set(
        xlabel="training seconds (every epoch of every stage)",
        ylabel="validation error rate (final model)",
        title="error against training time",
    )
    return figure
