"""Rule lr_find: sweep the learning rate for a stage's starting model and suggest one."""

from imgclf.logs import setup_logging
from imgclf.lr_find import Settings
from imgclf.stages import find_lr, make_job

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    optimiser = snakemake.params.optimiser
    find_lr(
        make_job(snakemake.input.split, snakemake.params.job, snakemake.threads),
        snakemake.wildcards.stage,
        Settings(**snakemake.params.settings),
        weight_decay=optimiser["weight_decay"],
        momentum=optimiser["moms"][0],
        outputs=snakemake.output,
        stage1_weights=snakemake.input.stage1_weights or None,
        stage1_meta=snakemake.input.stage1_meta or None,
    )
