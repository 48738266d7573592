# imgclf: from image URLs or folders to a cleaned data set and a classifier.
# This file is the table of contents; the rules live in workflow/rules/.
from snakemake.logging import logger
from snakemake.utils import min_version, validate

from imgclf.config import check_config_size, schema, settle_classes
from imgclf.files import RunLock
from imgclf.layout import RUN_LOCK

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


check_config_size(config)  # before validate, which would walk a YAML bomb for ever
validate(config, schema("config"))
where = settle_classes(config)
logger.info(
    f"{len(config['classes'])} classes, {where}: {', '.join(config['classes'])}"
)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"


# One run at a time in a folder. Taken when the jobs are about to start: not by a dry run, nor
# by a cluster job's own snakemake (which runs no hooks), while the run that sent it holds it.
run_lock = RunLock(RUN_LOCK)


onstart:
    run_lock.acquire()


rule all:
    default_target: True
    input:
        final_targets(),
