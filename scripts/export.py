"""Rule export: the chosen stage as ONNX, checked with ONNX Runtime, and its model.json."""

from imgclf.export import export_model
from imgclf.interpret import choose_model
from imgclf.logs import setup_logging
from imgclf.stages import make_job

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    export_model(
        make_job(snakemake.input.split, snakemake.params.job, snakemake.threads),
        choose_model(snakemake.params.final_model, snakemake.input.model),
        snakemake.output,
    )
