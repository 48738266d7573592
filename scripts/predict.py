"""Rule predict: classify the config's folder of new images with the exported model.

Inputs: model (model.onnx) and meta (its model.json); images (the files to classify).
Output: predictions.csv, a row per file (its label and probabilities, or its error).
"""

from pathlib import Path

from imgclf.files import write_csv
from imgclf.logs import setup_logging
from imgclf.predict import Predictor

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    predictor = Predictor(Path(snakemake.input.model).parent, snakemake.threads)
    write_csv(snakemake.output[0], predictor.predict_files(list(snakemake.input.images)))
