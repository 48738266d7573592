# Helpers shared by the rules: the classes and what their fetch_urls needs.
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from imgclf.config import check_config, experiment_configs
from imgclf.files import files_in
from imgclf.layout import MANIFEST, REVIEW, SPLIT, URL_LISTS
from imgclf.sources import (
    ARCHIVES_DIR,
    DEMOS_DIR,
    LOCAL_KINDS,
    archive_dir_name,
    class_inputs,
    class_max_images,
    is_url,
    source_kind,
)

check_config(config)

CLASSES = list(config["classes"])
# name -> the experiment's whole config; empty without `experiments`, when the rules that train
# and diagnose run once, on config itself, and write where they always did.
EXPERIMENTS = experiment_configs(config)
ARCHIVES = {
    archive_dir_name(source["archive"]): source["archive"]
    for source in config["classes"].values()
    if "archive" in source
}
DEMO_SETS = sorted(
    {source["demo"] for source in config["classes"].values() if "demo" in source}
)


def fetch_urls_inputs(wildcards):
    """What the classes' lists are made from, so that a changed source reruns fetch_urls."""
    # A folder or demo that several classes share is one input, once.
    inputs = class_inputs(config["classes"]).values()
    return list(dict.fromkeys(path for paths in inputs for path in paths))


def download_settings():
    """The download section per class: a class whose files the workflow listed itself may
    read them, and its cap is its own (see sources.class_max_images)."""
    settings = {}
    for label, source in config["classes"].items():
        local = source_kind(source) in LOCAL_KINDS
        settings[label] = {
            **config["download"],
            "allow_local": config["download"]["allow_local"] or local,
            "max_images": class_max_images(source, config["download"]["max_images"]),
        }
    return settings


def local_archive(wildcards):
    location = ARCHIVES[wildcards.archive]
    return [] if is_url(location) else location


def labels_file(wildcards):
    """The user's labels file when it exists: creating or editing it reruns split onwards."""
    path = config["labels"]
    return path if Path(path).exists() else []


def per_experiment(path):
    """Where the jobs that train or diagnose write `path`: there without experiments, else
    under experiments/{experiment}/ in its top folder (results/train/... becomes
    results/experiments/{experiment}/train/...; logs and benchmarks likewise)."""
    if not EXPERIMENTS:
        return path
    top, rest = path.split("/", 1)
    return f"{top}/experiments/{{experiment}}/{rest}"


# Where the export that goes forward lies: export's own without experiments, else the one that
# choose_experiment copies from the chosen experiment.
FINAL_EXPORT = {
    "model": "results/export/model.onnx",
    "meta": "results/export/model.json",
}
# The report files one page per experiment; without experiments there is one.
EXPERIMENT_PAGE = "{experiment}" if EXPERIMENTS else None


def experiment_config(wildcards):
    """The config of the job's experiment (config itself without experiments)."""
    return EXPERIMENTS[wildcards.experiment] if EXPERIMENTS else config


def experiment_setting(key):
    """A params function: `key` of the job's experiment config, so that editing one
    experiment's overrides reruns that experiment's jobs only."""
    return lambda wildcards: experiment_config(wildcards)[key]


def training_job(wildcards):
    """What all training rules depend on (classes, seed, model, augmentation)."""
    settings = experiment_config(wildcards)
    return {
        "classes": CLASSES,
        "seed": config["seed"],
        "model": settings["model"],
        "augment": settings["augment"],
    }


def packed(wildcards):
    """The pack of the job's experiment's image size: its images file and index."""
    size = experiment_config(wildcards)["model"]["image_size"]
    return expand(rules.pack.output, size=size)


def checkpoint_file(stage):
    """A params function: where a training stage keeps its checkpoint. Not an output, so
    that Snakemake keeps it when the job fails (a time limit, a kill) and the rerun, or
    the cluster's retry, resumes from it; the job deletes it once its outputs are written.
    """
    path = per_experiment(f"results/checkpoints/{stage}.safetensors")
    return lambda wildcards: path.format(experiment=wildcards.get("experiment", ""))


def training_threads(wildcards):
    """Up to 8 CPU threads for a job that runs the model. On one machine, experiments share
    its cores (Snakemake caps threads at --cores, so 8 would run them one after the other);
    on a cluster each job gets its own."""
    if len(EXPERIMENTS) < 2 or not workflow.local_exec or workflow.remote_exec:
        return 8
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores: a report or a dry run, which start no job
        return 8
    return max(1, min(8, cores // len(EXPERIMENTS)))


def training_resources(runtime_minutes):
    """What a job that runs the model asks of a cluster: 8 GB and `runtime_minutes`, both
    doubled on each retry (a job killed for memory or time), and the configured GPU."""
    return {
        "mem_mb": lambda wildcards, attempt: 8000 * attempt,
        "runtime": lambda wildcards, attempt: runtime_minutes * attempt,
        "gpu": config["gpu"],
        "gpu_model": config["gpu_model"],
    }


def one_cycle_optimiser(wildcards):
    """What lr_find takes from its stage's training settings: the optimiser's, no more."""
    section = experiment_config(wildcards)[
        "train_stage1" if wildcards.stage == "stage1" else "finetune_stage2"
    ]
    return {key: section[key] for key in ("weight_decay", "moms")}


def lr_find_if_auto(section):
    """An input function: the stage's lr_find suggestion, when the stage's max_lr is `auto`."""
    stage = "stage1" if section == "train_stage1" else "stage2"

    def suggestion(wildcards):
        if experiment_config(wildcards)[section]["max_lr"] != "auto":
            return []
        return expand(rules.lr_find.output.suggestion, stage=stage, allow_missing=True)

    return suggestion


def trained_stages(settings):
    """The stages that an experiment's `final_model` needs trained: one, or both for `best`."""
    choice = settings["final_model"]
    return ["stage1", "stage2"] if choice == "best" else [choice]


def trained_outputs(stage):
    return {
        "stage1": rules.train_stage1.output,
        "stage2": rules.finetune_stage2.output,
    }[stage]


def final_model_files(wildcards):
    """The model.json and weights of the trained stage(s) that `final_model` chooses from."""
    return [
        file
        for stage in trained_stages(experiment_config(wildcards))
        for file in (trained_outputs(stage).meta, trained_outputs(stage).weights)
    ]


def trained_histories(wildcards):
    """Every experiment's trained stages' history.csv, in the experiments' order."""
    return [
        expand(trained_outputs(stage).history, experiment=name)[0]
        for name, settings in EXPERIMENTS.items()
        for stage in trained_stages(settings)
    ]


def predict_images(wildcards):
    """The files of the predict folder: a new or removed one reruns predict."""
    return files_in([config["predict"]["folder"]])


def final_targets():
    """What a plain `snakemake` makes: the diagnosis, the export, and the predictions asked for."""
    if EXPERIMENTS:
        targets = [*rules.compare.output, *rules.choose_experiment.output]
    else:
        targets = [
            rules.interpret.output.metrics,
            rules.interpret.output.review,
            rules.export.output.meta,
        ]
    targets.append(rules.overview.output[0])
    if config["predict"]["folder"] is not None:
        targets.append(rules.predict.output[0])
    return targets
