"""Rule interpret: confusion matrix, most-confused pairs, metrics, top losses, review table."""

from imgclf.interpret import Settings, choose_model, interpret
from imgclf.logs import setup_logging
from imgclf.stages import make_job

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    interpret(
        make_job(snakemake.input.split, snakemake.params.job, snakemake.threads),
        choose_model(snakemake.params.final_model, snakemake.input.model),
        Settings(**snakemake.params.settings),
        snakemake.output,
    )
