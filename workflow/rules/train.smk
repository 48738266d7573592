# The training half: lr_find, train_stage1 (frozen body), finetune_stage2 (unfrozen).


wildcard_constraints:
    stage="stage1|stage2",
    experiment="|".join(map(re.escape, EXPERIMENTS)),


rule lr_find:
    input:
        split=rules.split.output.table,
        pack=packed,
        # Stage 2 sweeps from the trained stage 1, whose rate caps its own.
        stage1_weights=lambda wildcards: (
            rules.train_stage1.output.weights if wildcards.stage == "stage2" else []
        ),
        stage1_meta=lambda wildcards: (
            rules.train_stage1.output.meta if wildcards.stage == "stage2" else []
        ),
    output:
        table=per_experiment("results/lr_find/{stage}.csv"),
        plot=report(
            per_experiment("results/lr_find/{stage}.png"),
            caption="../report/lr_find.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
        suggestion=per_experiment("results/lr_find/{stage}.json"),
    log:
        per_experiment("logs/lr_find/{stage}.log"),
    benchmark:
        per_experiment("benchmarks/lr_find/{stage}.tsv")
    conda:
        "../envs/imgclf.yaml"
    threads: training_threads
    resources:
        **training_resources(runtime_minutes=30),
    params:
        job=training_job,
        settings=experiment_setting("lr_find"),
        optimiser=one_cycle_optimiser,
    script:
        "../../scripts/lr_find.py"


rule train_stage1:
    input:
        split=rules.split.output.table,
        pack=packed,
        lr_find=lr_find_if_auto("train_stage1"),
    output:
        weights=per_experiment("results/train/stage1/model.safetensors"),
        meta=per_experiment("results/train/stage1/model.json"),
        history=report(
            per_experiment("results/train/stage1/history.csv"),
            caption="../report/history.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
        steps=per_experiment("results/train/stage1/steps.csv"),
        losses=report(
            per_experiment("results/train/stage1/losses.png"),
            caption="../report/losses.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
        schedule=report(
            per_experiment("results/train/stage1/schedule.png"),
            caption="../report/schedule.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
        batch=report(
            per_experiment("results/train/stage1/batch.png"),
            caption="../report/batch.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
    log:
        per_experiment("logs/train_stage1/train_stage1.log"),
    benchmark:
        per_experiment("benchmarks/train_stage1/train_stage1.tsv")
    conda:
        "../envs/imgclf.yaml"
    threads: training_threads
    resources:
        **training_resources(runtime_minutes=120),
    params:
        job=training_job,
        stage="stage1",
        settings=experiment_setting("train_stage1"),
        checkpoint=checkpoint_file("stage1"),
    script:
        "../../scripts/train.py"


rule finetune_stage2:
    input:
        split=rules.split.output.table,
        pack=packed,
        stage1_weights=rules.train_stage1.output.weights,
        stage1_meta=rules.train_stage1.output.meta,
        lr_find=lr_find_if_auto("finetune_stage2"),
    output:
        weights=per_experiment("results/train/stage2/model.safetensors"),
        meta=per_experiment("results/train/stage2/model.json"),
        history=report(
            per_experiment("results/train/stage2/history.csv"),
            caption="../report/history.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
        steps=per_experiment("results/train/stage2/steps.csv"),
        losses=report(
            per_experiment("results/train/stage2/losses.png"),
            caption="../report/losses.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
        schedule=report(
            per_experiment("results/train/stage2/schedule.png"),
            caption="../report/schedule.rst",
            category="Training",
            subcategory=EXPERIMENT_PAGE,
        ),
    log:
        per_experiment("logs/finetune_stage2/finetune_stage2.log"),
    benchmark:
        per_experiment("benchmarks/finetune_stage2/finetune_stage2.tsv")
    conda:
        "../envs/imgclf.yaml"
    threads: training_threads
    resources:
        **training_resources(runtime_minutes=120),
    params:
        job=training_job,
        stage="stage2",
        settings=experiment_setting("finetune_stage2"),
        checkpoint=checkpoint_file("stage2"),
    script:
        "../../scripts/train.py"
