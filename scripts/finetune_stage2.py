"""Rule finetune_stage2: unfreeze and train with discriminative learning rates."""

from imgclf.logs import setup_logging
from imgclf.stages import make_job, train_stage
from imgclf.train import OneCycleSettings

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    train_stage(
        make_job(snakemake.input.split, snakemake.params.job, snakemake.threads),
        "stage2",
        OneCycleSettings(**snakemake.params.settings),
        snakemake.output,
        lr_find_json=snakemake.input.lr_find[0] if snakemake.input.lr_find else None,
        stage1_weights=snakemake.input.stage1_weights,
        stage1_meta=snakemake.input.stage1_meta,
    )
