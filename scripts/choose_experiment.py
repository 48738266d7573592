"""Rule choose_experiment: the export that goes forward, and its review queue.

Inputs: leaderboard (compare's, best first); models, metas, reviews (each experiment's
model.onnx, model.json and review.csv, in the order of params.experiments).
Outputs: model and meta (results/export/: the chosen experiment's model.onnx, and its
model.json with the experiment and why), review (results/interpret/review.csv, which the
review command and the cleaner read).
"""

from pathlib import Path

import pandas as pd

from imgclf.experiments import choose_experiment
from imgclf.files import read_json, write_bytes, write_json
from imgclf.logs import setup_logging

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    inputs, params = snakemake.input, snakemake.params
    board = pd.read_csv(inputs.leaderboard, dtype={"experiment": str})  # "2" is a name too
    name, reason = choose_experiment(params.choice, board)
    chosen = params.experiments.index(name)
    meta = read_json(inputs.metas[chosen])
    write_json(snakemake.output.meta, {**meta, "experiment": name, "experiment_reason": reason})
    write_bytes(snakemake.output.model, Path(inputs.models[chosen]).read_bytes())
    write_bytes(snakemake.output.review, Path(inputs.reviews[chosen]).read_bytes())
