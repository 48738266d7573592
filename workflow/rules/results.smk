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
        audit=rules.audit.output[0],
        model=final_model_files,
    output:
        confusion_png=report(
            "results/interpret/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="Interpretation",
        ),
        confusion_csv="results/interpret/confusion_matrix.csv",
        most_confused=report(
            "results/interpret/most_confused.csv",
            caption="../report/most_confused.rst",
            category="Interpretation",
        ),
        per_class=report(
            "results/interpret/per_class.csv",
            caption="../report/per_class.rst",
            category="Interpretation",
        ),
        metrics=report(
            "results/interpret/metrics.json",
            caption="../report/metrics.rst",
            category="Interpretation",
        ),
        top_losses=report(
            "results/interpret/top_losses.png",
            caption="../report/top_losses.rst",
            category="Interpretation",
        ),
        review=report(
            REVIEW,
            caption="../report/review.rst",
            category="Cleaning",
        ),
    log:
        "logs/interpret/interpret.log",
    benchmark:
        "benchmarks/interpret/interpret.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        **training_resources(runtime_minutes=30),
    params:
        job=training_job,
        final_model=lookup(dpath="final_model", within=config),
        settings=lookup(dpath="interpret", within=config),
    script:
        "../../scripts/interpret.py"


rule export:
    input:
        split=rules.split.output.table,
        model=final_model_files,
    output:
        model="results/export/model.onnx",
        meta="results/export/model.json",
    log:
        "logs/export/export.log",
    benchmark:
        "benchmarks/export/export.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        job=training_job,
        final_model=lookup(dpath="final_model", within=config),
    script:
        "../../scripts/export.py"


rule predict:
    input:
        model=rules.export.output.model,
        meta=rules.export.output.meta,
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
