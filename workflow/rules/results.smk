# The results half: audit (which labels to doubt), interpret (where the model goes wrong),
# export (ONNX), predict.


rule audit:
    input:
        split=rules.split.output.table,
        features=rules.features.output.features,
        near_duplicates=rules.features.output.near_duplicates,
    output:
        report(
            "results/audit/audit.csv",
            caption="../report/audit.rst",
            category="Cleaning",
        ),
    log:
        "logs/audit/audit.log",
    benchmark:
        "benchmarks/audit/audit.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        classes=CLASSES,
        seed=lookup(dpath="seed", within=config),
        settings=lookup(dpath="audit", within=config),
    script:
        "../../scripts/audit.py"


rule interpret:
    input:
        split=rules.split.output.table,
        pack=packed,
        audit=rules.audit.output[0],
        model=final_model_files,
    output:
        confusion_png=report(
            per_experiment("results/interpret/confusion_matrix.png"),
            caption="../report/confusion_matrix.rst",
            category="Interpretation",
            subcategory=EXPERIMENT_PAGE,
        ),
        confusion_csv=per_experiment("results/interpret/confusion_matrix.csv"),
        most_confused=report(
            per_experiment("results/interpret/most_confused.csv"),
            caption="../report/most_confused.rst",
            category="Interpretation",
            subcategory=EXPERIMENT_PAGE,
        ),
        per_class=report(
            per_experiment("results/interpret/per_class.csv"),
            caption="../report/per_class.rst",
            category="Interpretation",
            subcategory=EXPERIMENT_PAGE,
        ),
        metrics=report(
            per_experiment("results/interpret/metrics.json"),
            caption="../report/metrics.rst",
            category="Interpretation",
            subcategory=EXPERIMENT_PAGE,
        ),
        top_losses=report(
            per_experiment("results/interpret/top_losses.png"),
            caption="../report/top_losses.rst",
            category="Interpretation",
            subcategory=EXPERIMENT_PAGE,
        ),
        review=report(
            per_experiment(REVIEW),
            caption="../report/review.rst",
            category="Cleaning",
            subcategory=EXPERIMENT_PAGE,
        ),
    log:
        per_experiment("logs/interpret/interpret.log"),
    benchmark:
        per_experiment("benchmarks/interpret/interpret.tsv")
    conda:
        "../envs/imgclf.yaml"
    threads: training_threads
    resources:
        **training_resources(runtime_minutes=30),
    params:
        job=training_job,
        final_model=experiment_setting("final_model"),
        settings=lookup(dpath="interpret", within=config),
    script:
        "../../scripts/interpret.py"


rule export:
    input:
        split=rules.split.output.table,
        pack=packed,
        model=final_model_files,
    output:
        model=per_experiment(FINAL_EXPORT["model"]),
        meta=per_experiment(FINAL_EXPORT["meta"]),
    log:
        per_experiment("logs/export/export.log"),
    benchmark:
        per_experiment("benchmarks/export/export.tsv")
    conda:
        "../envs/imgclf.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        job=training_job,
        final_model=experiment_setting("final_model"),
        max_pixels=lookup(dpath="verify/max_pixels", within=config),
    script:
        "../../scripts/export.py"


if EXPERIMENTS:

    rule compare:
        input:
            split=rules.split.output.table,
            metrics=expand(rules.interpret.output.metrics, experiment=EXPERIMENTS),
            exports=expand(rules.export.output.meta, experiment=EXPERIMENTS),
            models=expand(rules.export.output.model, experiment=EXPERIMENTS),
            histories=trained_histories,
        output:
            leaderboard=report(
                "results/compare/leaderboard.csv",
                caption="../report/leaderboard.rst",
                category="Experiments",
            ),
            error_per_epoch=report(
                "results/compare/error_per_epoch.png",
                caption="../report/error_per_epoch.rst",
                category="Experiments",
            ),
            error_versus_time=report(
                "results/compare/error_versus_time.png",
                caption="../report/error_versus_time.rst",
                category="Experiments",
            ),
        log:
            "logs/compare/compare.log",
        benchmark:
            "benchmarks/compare/compare.tsv"
        conda:
            "../envs/imgclf.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            experiments=list(EXPERIMENTS),
            stages={
                name: trained_stages(settings)
                for name, settings in EXPERIMENTS.items()
            },
        script:
            "../../scripts/compare.py"

    rule choose_experiment:
        input:
            leaderboard=rules.compare.output.leaderboard,
            models=expand(rules.export.output.model, experiment=EXPERIMENTS),
            metas=expand(rules.export.output.meta, experiment=EXPERIMENTS),
            reviews=expand(rules.interpret.output.review, experiment=EXPERIMENTS),
        output:
            model=FINAL_EXPORT["model"],
            meta=FINAL_EXPORT["meta"],
            review=REVIEW,
        log:
            "logs/choose_experiment/choose_experiment.log",
        localrule: True
        conda:
            "../envs/imgclf.yaml"
        params:
            experiments=list(EXPERIMENTS),
            choice=lookup(dpath="final_experiment", within=config),
        script:
            "../../scripts/choose_experiment.py"


# The most-confused pairs of each model that may go forward, by its experiment ('' without).
CHOSEN_CONFUSED = {
    name: str(rules.interpret.output.most_confused).format(experiment=name)
    for name in EXPERIMENTS or [""]
}


# The report's first page: what was trained on what, how well, and what to do next.
rule overview:
    input:
        summary=rules.verify.output.summary,
        rejected=rules.verify.output.rejected,
        meta=FINAL_EXPORT["meta"],
        most_confused=CHOSEN_CONFUSED.values(),
        review=REVIEW,
    output:
        report(
            "results/overview.html",
            caption="../report/overview.rst",
            category="1. The run",
        ),
    log:
        "logs/overview/overview.log",
    localrule: True
    conda:
        "../envs/imgclf.yaml"
    params:
        most_confused=CHOSEN_CONFUSED,
    script:
        "../../scripts/overview.py"


rule predict:
    input:
        model=FINAL_EXPORT["model"],
        meta=FINAL_EXPORT["meta"],
        images=predict_images,
    output:
        "results/predict/predictions.csv",
    log:
        "logs/predict/predict.log",
    benchmark:
        "benchmarks/predict/predict.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=lambda wildcards, attempt: 30 * attempt,
    script:
        "../../scripts/predict.py"
