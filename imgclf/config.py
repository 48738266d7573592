"""The config: read as the workflow reads it, and the checks its JSON schema cannot express."""

import json
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import yaml

from .demo import DEMO_SETS
from .sources import SOURCE_KINDS, SourceError, found_classes, is_url


def schema(name: str) -> str:
    """The path of a JSON schema that ships in the package (config, labels), so that an
    installed imgclf validates from any folder."""
    return str(files("imgclf").joinpath("schemas", f"{name}.schema.yaml"))


MAX_CONFIG_VALUES = 100_000  # a real config has hundreds; a YAML bomb has billions


class ConfigError(ValueError):
    pass


def check_config_size(config) -> None:
    """Refuse a config that YAML aliases expand past MAX_CONFIG_VALUES, before anything walks it.

    An alias is a reference, so loading a "billion laughs" file is instant, but validating it
    walks every expanded value and never ends. Each shared value is sized once here.
    """
    sizes: dict[int, int] = {}

    def size(value) -> int:
        if not isinstance(value, dict | list):
            return 1
        if id(value) not in sizes:
            children = value.values() if isinstance(value, dict) else value
            sizes[id(value)] = 1 + sum(size(child) for child in children)
        return sizes[id(value)]

    try:
        total = size(config)
    except RecursionError as error:
        raise ConfigError("the config is nested too deeply") from error
    if total > MAX_CONFIG_VALUES:
        raise ConfigError(
            f"the config expands to {total} values through YAML aliases (&name, *name); "
            f"at most {MAX_CONFIG_VALUES} are accepted"
        )


def read_config(path: str | Path) -> dict:
    """A config file as the workflow sees it: validated, with the schema's defaults filled in."""
    from snakemake.utils import validate  # slow to import; only the commands need it

    config = yaml.safe_load(Path(path).read_text())
    check_config_size(config)
    validate(config, schema("config"))
    settle_classes(config)
    return config


def merge(base, overrides):
    """`base` with `overrides` laid over it, key by key at every level of nesting."""
    if not isinstance(base, dict) or not isinstance(overrides, dict):
        return overrides
    return {**base, **{key: merge(base.get(key), value) for key, value in overrides.items()}}


def experiment_configs(config: dict) -> dict[str, dict]:
    """Each experiment's config, checked against the schema: the validated config with the
    experiment's overrides laid over it. Empty without `experiments`.

    An override changes only the keys it names (`model: {image_size: 224}` keeps the arch), so
    an experiment reads as its difference from the config above it.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    shared = {**config, "experiments": None}  # an experiment is one run
    configs = {}
    for name, overrides in (config.get("experiments") or {}).items():
        configs[name] = merge(shared, overrides or {})
        try:
            validate(configs[name], schema("config"))
        except WorkflowError as error:
            raise ConfigError(f"experiments.{name}: {error}") from None
        problems = stage_size_problems(configs[name])
        if problems:
            raise ConfigError(f"experiments.{name}: " + "; ".join(problems))
    return configs


def stage_size_problems(config: dict) -> list[str]:
    """A stage that would start its progressive resizing above the size it grows to."""
    size = config["model"]["image_size"]
    return [
        f"{stage}.start_size: {config[stage]['start_size']} is above model.image_size "
        f"({size}), the size its epochs grow to"
        for stage in ("train_stage1", "finetune_stage2")
        if (config[stage].get("start_size") or 0) > size
    ]


def settle_classes(config: dict) -> str:
    """Give a validated config its `classes`: as listed, or found in the data that
    `classes_from` names (see sources.found_classes), which then leaves the config. Returns
    where the classes came from, for the log."""
    given = [key for key in ("classes", "classes_from") if key in config]
    if len(given) != 1:
        raise ConfigError(
            "config.yaml: give classes (each class and its source) or classes_from (a folder "
            f"to find them in), one of the two (found: {', '.join(given) or 'neither'})"
        )
    if given == ["classes"]:
        return "listed under classes"
    spec = config.pop("classes_from")
    places = [key for key in ("folder", "archive", "url_lists") if key in spec]
    # Whether each place must have a pattern: a folder may or may not, an archive must.
    pattern_wanted = {"folder": "pattern" in spec, "archive": True, "url_lists": False}
    if len(places) != 1 or pattern_wanted[places[0]] != ("pattern" in spec):
        raise ConfigError(
            "classes_from: give folder (its sub-folders are the classes), folder or archive "
            "and pattern (group 1 of each image's path is its class), or url_lists "
            "(urls_<class>.txt files)"
        )
    try:
        config["classes"] = found_classes(spec)
    except (SourceError, re.error) as error:
        raise ConfigError(str(error)) from None
    return f"found in {spec[places[0]]}"


def check_class_source(name: str, source: dict) -> list[str]:
    """Reasons why one class's source cannot work, each naming the config key."""
    key = f"classes.{name}"
    kinds = [kind for kind in SOURCE_KINDS if kind in source]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        return [f"{key}: give exactly one source of {', '.join(SOURCE_KINDS)} (found: {found})"]
    kind = kinds[0]
    location = source[kind]
    problems = []
    if kind == "urls" and not Path(location).is_file():
        problems.append(f"{key}.urls: URL list file {location!r} does not exist")
    if kind == "folder" and not Path(location).is_dir():
        problems.append(f"{key}.folder: folder {location!r} does not exist")
    if kind == "archive" and not is_url(location) and not Path(location).is_file():
        problems.append(f"{key}.archive: {location!r} is neither an http(s) URL nor a file")
    if kind == "demo" and name not in DEMO_SETS[location]:
        problems.append(
            f"{key}: the {location} demo has the classes {', '.join(DEMO_SETS[location])}"
        )
    if "pattern" in source:
        if kind not in ("folder", "archive"):
            problems.append(f"{key}.pattern: only a folder or an archive source takes a pattern")
        try:
            if re.compile(source["pattern"]).groups < 1:
                problems.append(f"{key}.pattern: needs a group, (...), that captures the label")
        except re.error as error:
            problems.append(f"{key}.pattern: not a regular expression: {error}")
    return problems


def check_config(config: dict) -> None:
    """Raise ConfigError listing every problem found in the validated config."""
    problems = [
        problem
        for name, source in config["classes"].items()
        for problem in check_class_source(name, source)
    ]
    if len(config["classes"]) < 2:
        problems.append("classes: a classifier needs at least two classes")
    problems += stage_size_problems(config)
    folder = config["predict"]["folder"]
    if folder is not None and not Path(folder).is_dir():
        problems.append(f"predict.folder: folder {folder!r} does not exist")
    experiments = config.get("experiments") or {}
    choice = config["final_experiment"]
    if choice != "best" and choice not in experiments:
        named = ", ".join(experiments) or "none: there is no experiments key"
        problems.append(f"final_experiment: {choice!r} is not an experiment (they are: {named})")
    if problems:
        raise ConfigError("config.yaml is not usable:\n  " + "\n  ".join(problems))


def schema_keys() -> Iterator[tuple[str, dict]]:
    """Every key of config.schema.yaml, dotted (a name the user picks is NAME), with its
    schema, parents before children."""

    def walk(node: dict, key: str) -> Iterator[tuple[str, dict]]:
        yield key, node
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{key}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{key}.NAME")

    document = yaml.safe_load(Path(schema("config")).read_text())
    for name, child in document["properties"].items():
        yield from walk(child, name)


def reference() -> str:
    """docs/config.md: every key of config.schema.yaml with its type, default and meaning."""
    rows = []
    for key, node in schema_keys():
        kind = node.get("type") or [
            option.get("type") or option.get("const") for option in node.get("oneOf", [])
        ]
        if isinstance(kind, list):
            kind = " or ".join(map(str, kind))
        if "enum" in node:
            kind = " or ".join(map(str, node["enum"]))
        default = node.get("default")
        shown = "" if default is None or default == {} else f"`{json.dumps(default)}`"
        text = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | {shown} | {text} |")
    return (
        "# config.yaml: every key\n\n"
        "Generated from `imgclf/schemas/config.schema.yaml` by `python -m imgclf.config > "
        "docs/config.md`; a test keeps the two in step. A key left out takes its default.\n\n"
        "| key | type | default | what it does |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    print(reference(), end="")
