# Helpers shared by the rules: the classes and what each one's fetch_urls needs.
import re
from pathlib import Path

from imgclf.config import check_config
from imgclf.files import files_in
from imgclf.layout import MANIFEST, REVIEW, SPLIT
from imgclf.sources import (
    LOCAL_KINDS,
    archive_dir_name,
    is_url,
    list_images,
    source_kind,
)

check_config(config)

CLASSES = list(config["classes"])
ARCHIVES = {
    archive_dir_name(source["archive"]): source["archive"]
    for source in config["classes"].values()
    if "archive" in source
}
DEMO_SETS = sorted(
    {source["demo"] for source in config["classes"].values() if "demo" in source}
)


def fetch_urls_input(wildcards):
    """What a class's list depends on, so that a changed source reruns fetch_urls."""
    source = config["classes"][wildcards.cls]
    kind = source_kind(source)
    if kind == "urls":
        return source["urls"]
    if kind == "folder":
        # Listing the folder here means new or removed photos rerun the class's fetch_urls.
        return list_images(source["folder"], source.get("pattern"), wildcards.cls)
    if kind == "archive":
        return f"results/archives/{archive_dir_name(source['archive'])}"
    if kind == "demo":
        return f"results/demo/{source['demo']}"
    return []


def download_settings(wildcards):
    """The download section; a class whose files the workflow listed itself may read them."""
    local = source_kind(config["classes"][wildcards.cls]) in LOCAL_KINDS
    return {
        **config["download"],
        "allow_local": config["download"]["allow_local"] or local,
    }


def local_archive(wildcards):
    location = ARCHIVES[wildcards.archive]
    return [] if is_url(location) else location


def labels_file(wildcards):
    """The user's labels file when it exists: creating or editing it reruns split onwards."""
    path = config["labels"]
    return path if Path(path).exists() else []


def training_job(wildcards):
    """What all training rules depend on (classes, seed, model, augmentation)."""
    return {
        "classes": CLASSES,
        "seed": config["seed"],
        "model": config["model"],
        "augment": config["augment"],
    }


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
    section = config[
        "train_stage1" if wildcards.stage == "stage1" else "finetune_stage2"
    ]
    return {key: section[key] for key in ("weight_decay", "moms")}


def lr_find_if_auto(section):
    """A stage's lr_find suggestion as input, when the stage's max_lr is `auto`."""
    stage = "stage1" if section == "train_stage1" else "stage2"
    if config[section]["max_lr"] != "auto":
        return []
    return expand(rules.lr_find.output.suggestion, stage=stage)


def final_model_files(wildcards):
    """The trained stage(s) that `final_model` needs: one, or both for `best`."""
    trained = {
        "stage1": rules.train_stage1.output,
        "stage2": rules.finetune_stage2.output,
    }
    stages = (
        ["stage1", "stage2"]
        if config["final_model"] == "best"
        else [config["final_model"]]
    )
    return [
        file
        for stage in stages
        for file in (trained[stage].meta, trained[stage].weights)
    ]


def predict_images(wildcards):
    """The files of the predict folder: a new or removed one reruns predict."""
    return files_in([config["predict"]["folder"]])


def final_targets():
    """What a plain `snakemake` makes: the diagnosis, the export, and the predictions asked for."""
    targets = [
        rules.interpret.output.metrics,
        rules.interpret.output.review,
        rules.export.output.meta,
    ]
    if config["predict"]["folder"] is not None:
        targets.append(rules.predict.output[0])
    return targets
