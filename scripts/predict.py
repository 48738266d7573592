"""Rule predict: classify the config's folder of new images with the exported model."""

from pathlib import Path

from imgclf.files import write_csv
from imgclf.logs import setup_logging
from imgclf.predict import Predictor

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    predictor = Predictor(Path(snakemake.input.model).parent, snakemake.threads)
    write_csv(snakemake.output[0], predictor.predict_files(list(snakemake.input.images)))
