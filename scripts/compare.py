"""Rule compare: the experiments side by side.

Inputs: split (split.csv: the validation images that time each export); metrics (each
experiment's interpret metrics.json), exports (each experiment's export model.json, beside its
model.onnx), histories (each experiment's trained stages' history.csv, stage 1's first), all in
the order of params.experiments; params.stages says how many histories each has.
Outputs: leaderboard (CSV, best first), error_per_epoch and error_versus_time (PNG).
"""

from pathlib import Path

import pandas as pd

from imgclf.experiments import Experiment, leaderboard
from imgclf.files import read_json, write_csv
from imgclf.logs import setup_logging
from imgclf.plots import plot_error_per_epoch, plot_error_versus_time, save_figure
from imgclf.split import read_split


def read_experiments(inputs, params) -> list[Experiment]:
    histories = iter(inputs.histories)
    return [
        Experiment(
            name,
            read_json(metrics),
            [pd.read_csv(next(histories)) for _ in params.stages[name]],
            Path(export).parent,
        )
        for name, metrics, export in zip(
            params.experiments, inputs.metrics, inputs.exports, strict=True
        )
    ]


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    experiments = read_experiments(snakemake.input, snakemake.params)
    valid = read_split(snakemake.input.split).query("is_valid")
    board = leaderboard(experiments, valid["path"].tolist(), snakemake.threads)
    write_csv(snakemake.output.leaderboard, board)
    epochs = {experiment.name: experiment.epochs for experiment in experiments}
    save_figure(plot_error_per_epoch(epochs), snakemake.output.error_per_epoch)
    save_figure(plot_error_versus_time(board), snakemake.output.error_versus_time)
