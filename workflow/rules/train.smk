# The training half: lr_find, train_stage1 (frozen body), finetune_stage2 (unfrozen).


wildcard_constraints:
    stage="stage1|stage2",


rule lr_find:
    input:
        split=rules.split.output.table,
        # Stage 2 sweeps from the trained stage 1, whose rate caps its own.
        stage1_weights=lambda wildcards: (
            rules.train_stage1.output.weights if wildcards.stage == "stage2" else []
        ),
        stage1_meta=lambda wildcards: (
            rules.train_stage1.output.meta if wildcards.stage == "stage2" else []
        ),
    output:
        table="results/lr_find/{stage}.csv",
        plot=report(
            "results/lr_find/{stage}.png",
            caption="../report/lr_find.rst",
            category="Training",
        ),
        suggestion="results/lr_find/{stage}.json",
    log:
        "logs/lr_find/{stage}.log",
    benchmark:
        "benchmarks/lr_find/{stage}.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        **training_resources(runtime_minutes=30),
    params:
        job=training_job,
        settings=lookup(dpath="lr_find", within=config),
        optimiser=one_cycle_optimiser,
    script:
        "../../scripts/lr_find.py"


rule train_stage1:
    input:
        split=rules.split.output.table,
        lr_find=lr_find_if_auto("train_stage1"),
    output:
        weights="results/train/stage1/model.safetensors",
        meta="results/train/stage1/model.json",
        history=report(
            "results/train/stage1/history.csv",
            caption="../report/history.rst",
            category="Training",
        ),
        steps="results/train/stage1/steps.csv",
        losses=report(
            "results/train/stage1/losses.png",
            caption="../report/losses.rst",
            category="Training",
        ),
        schedule=report(
            "results/train/stage1/schedule.png",
            caption="../report/schedule.rst",
            category="Training",
        ),
        batch=report(
            "results/train/stage1/batch.png",
            caption="../report/batch.rst",
            category="Training",
        ),
    log:
        "logs/train_stage1/train_stage1.log",
    benchmark:
        "benchmarks/train_stage1/train_stage1.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        **training_resources(runtime_minutes=120),
    params:
        job=training_job,
        stage="stage1",
        settings=lookup(dpath="train_stage1", within=config),
    script:
        "../../scripts/train.py"


rule finetune_stage2:
    input:
        split=rules.split.output.table,
        stage1_weights=rules.train_stage1.output.weights,
        stage1_meta=rules.train_stage1.output.meta,
        lr_find=lr_find_if_auto("finetune_stage2"),
    output:
        weights="results/train/stage2/model.safetensors",
        meta="results/train/stage2/model.json",
        history=report(
            "results/train/stage2/history.csv",
            caption="../report/history.rst",
            category="Training",
        ),
        steps="results/train/stage2/steps.csv",
        losses=report(
            "results/train/stage2/losses.png",
            caption="../report/losses.rst",
            category="Training",
        ),
        schedule=report(
            "results/train/stage2/schedule.png",
            caption="../report/schedule.rst",
            category="Training",
        ),
    log:
        "logs/finetune_stage2/finetune_stage2.log",
    benchmark:
        "benchmarks/finetune_stage2/finetune_stage2.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        **training_resources(runtime_minutes=120),
    params:
        job=training_job,
        stage="stage2",
        settings=lookup(dpath="finetune_stage2", within=config),
    script:
        "../../scripts/train.py"
