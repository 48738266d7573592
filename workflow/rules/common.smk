# Helpers shared by the rules: the classes and what each one's fetch_urls needs.
import re
from pathlib import Path

from imgclf.config import check_config
from imgclf.sources import archive_dir_name, is_url, list_images, source_kind

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


wildcard_constraints:
    cls="|".join(map(re.escape, CLASSES)),
    archive="|".join(map(re.escape, ARCHIVES)) or "(?!)",
    demo="|".join(map(re.escape, DEMO_SETS)) or "(?!)",


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


def local_archive(wildcards):
    location = ARCHIVES[wildcards.archive]
    return [] if is_url(location) else location


def labels_file(wildcards):
    """The user's labels file when it exists: creating or editing it reruns split onwards."""
    path = config["labels"]
    return path if Path(path).exists() else []
