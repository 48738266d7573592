# The data half: fetch_urls -> download -> verify -> split.


wildcard_constraints:
    archive="|".join(map(re.escape, ARCHIVES)) or "(?!)",
    demo="|".join(map(re.escape, DEMO_SETS)) or "(?!)",
    size=r"\d+",


localrules:
    write_demo,
    fetch_archive,
    fetch_urls,
    download,


rule write_demo:
    output:
        directory(f"{DEMOS_DIR}/{{demo}}"),
    log:
        "logs/write_demo/{demo}.log",
    conda:
        "../envs/imgclf.yaml"
    script:
        "../../scripts/write_demo.py"


rule fetch_archive:
    input:
        local_archive,
    output:
        directory(f"{ARCHIVES_DIR}/{{archive}}"),
    log:
        "logs/fetch_archive/{archive}.log",
    conda:
        "../envs/imgclf.yaml"
    params:
        location=lambda wildcards: ARCHIVES[wildcards.archive],
        limits=lookup(dpath="archives", within=config),
    script:
        "../../scripts/fetch_archive.py"


# One job for all the classes (and one for their downloads): with 1,000 classes, a job each
# was 2,000 Python start-ups. A class's list and table are files of their own all the same.
# The lists' folder is the output, not each list: Snakemake checksums every input of a job
# once per output, and 1,000 lists of 10,000 photos were 10 million checksums.
rule fetch_urls:
    input:
        fetch_urls_inputs,
    output:
        directory(URL_LISTS),
    log:
        "logs/fetch_urls/fetch_urls.log",
    conda:
        "../envs/imgclf.yaml"
    params:
        sources=config["classes"],
    script:
        "../../scripts/fetch_urls.py"


# A local rule: compute nodes often have no internet. Each class's images land in a store
# beside its table, results/download/{cls}/, that is not an output: Snakemake would delete an
# output before a rerun, and the store is what lets a rerun fetch only what is missing (so a
# longer list of one class fetches only its new URLs, though the job covers every class).
rule download:
    input:
        rules.fetch_urls.output[0],
    output:
        expand("results/download/{cls}.csv", cls=CLASSES),
    log:
        "logs/download/download.log",
    benchmark:
        "benchmarks/download/download.tsv"
    conda:
        "../envs/imgclf.yaml"
    params:
        settings=download_settings(),
    script:
        "../../scripts/download.py"


rule verify:
    input:
        rules.download.output,
    output:
        manifest=report(
            MANIFEST,
            caption="../report/manifest.rst",
            category="Data",
        ),
        rejected=report(
            "results/verify/rejected.csv",
            caption="../report/rejected.rst",
            category="Data",
        ),
        summary=report(
            "results/verify/summary.csv",
            caption="../report/summary.rst",
            category="Data",
        ),
        images=directory("results/verify/images"),
    log:
        "logs/verify/verify.log",
    benchmark:
        "benchmarks/verify/verify.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=lookup(dpath="verify", within=config),
    script:
        "../../scripts/verify.py"


# What the pretrained body sees in each image: the audit's input, and the near-duplicate
# groups that split keeps on one side. Its input is the manifest, not the labels, so a
# labels edit does not rerun it.
rule features:
    input:
        manifest=rules.verify.output.manifest,
    output:
        features="results/features/features.npz",
        near_duplicates="results/features/near_duplicates.csv",
    log:
        "logs/features/features.log",
    benchmark:
        "benchmarks/features/features.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        **training_resources(runtime_minutes=30),
    params:
        arch=lookup(dpath="model/arch", within=config),
        settings=lookup(dpath="audit", within=config),
    script:
        "../../scripts/features.py"


# Every verified image decoded once at the size a model sees ({size}: model.image_size, one
# pack per size that an experiment uses), read by every job that runs the model through a
# memory map. Its input is the manifest, not the labels.
rule pack:
    input:
        manifest=rules.verify.output.manifest,
    output:
        images="results/pack/{size}/images.u8",
        index="results/pack/{size}/index.npz",
    log:
        "logs/pack/{size}.log",
    benchmark:
        "benchmarks/pack/{size}.tsv"
    conda:
        "../envs/imgclf.yaml"
    threads: 8
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../../scripts/pack.py"


rule split:
    input:
        manifest=rules.verify.output.manifest,
        near_duplicates=rules.features.output.near_duplicates,
        labels=labels_file,
    output:
        table=SPLIT,
    log:
        "logs/split/split.log",
    conda:
        "../envs/imgclf.yaml"
    params:
        classes=CLASSES,
        seed=lookup(dpath="seed", within=config),
        settings=lookup(dpath="split", within=config),
    script:
        "../../scripts/split.py"
