"""Rule lr_find: sweep the learning rate for a stage's starting model and choose one.

Inputs: split (split.csv); pack (its images file and index); for stage 2 also stage1_weights
and stage1_meta (stage 1's model, whose rate caps stage 2's).
Outputs: table (the loss at each rate, CSV), plot (PNG), suggestion (the rate and why, JSON).
"""

from imgclf.files import write_csv, write_json
from imgclf.job import make_job
from imgclf.logs import setup_logging
from imgclf.lr_find import LrFindSettings
from imgclf.plots import save_figure
from imgclf.stages import find_lr

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    optimiser = snakemake.params.optimiser
    found = find_lr(
        make_job(
            snakemake.input.split, snakemake.input.pack, snakemake.params.job, snakemake.threads
        ),
        snakemake.wildcards.stage,
        LrFindSettings(**snakemake.params.settings),
        weight_decay=optimiser["weight_decay"],
        momentum=optimiser["moms"][0],
        stage1_weights=snakemake.input.stage1_weights or None,
        stage1_meta=snakemake.input.stage1_meta or None,
    )
    write_csv(snakemake.output.table, found.table)
    save_figure(found.plot, snakemake.output.plot)
    write_json(snakemake.output.suggestion, found.summary)
