"""Rule train_stage1: train the head (and batch norms) on the frozen pretrained body."""

from imgclf.logs import setup_logging
from imgclf.stages import make_job, train_stage
from imgclf.train import OneCycleSettings

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    train_stage(
        make_job(snakemake.input.split, snakemake.params.job, snakemake.threads),
        "stage1",
        OneCycleSettings(**snakemake.params.settings),
        snakemake.output,
        lr_find_json=snakemake.input.lr_find[0] if snakemake.input.lr_find else None,
    )
