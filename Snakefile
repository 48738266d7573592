# imgclf: from image URLs or folders to a cleaned data set and a classifier.
# This file is the table of contents; the rules live in workflow/rules/.
from snakemake.utils import min_version, validate

from imgclf.config import check_config_size, schema

min_version("9.0")


configfile: "config.yaml"


check_config_size(config)  # before validate, which would walk a YAML bomb for ever
validate(config, schema("config"))


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"


rule all:
    default_target: True
    input:
        final_targets(),
