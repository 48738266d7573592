"""imgclf: one command for what you do around a run of the workflow.

    imgclf init PHOTOS [--output config.yaml]   a starting config for a folder of photos
    imgclf predict results/export IMAGES...     classify images with the exported model
    imgclf review [--labels labels.csv]         apply a reviewed queue to the labels file
    imgclf clean                                the label cleaner in the browser
    imgclf serve results/export                 a page and an API for the exported model

`imgclf COMMAND --help` says more. The workflow itself runs with `snakemake --cores 4`.
"""

import argparse
import sys
from datetime import date
from pathlib import Path

import yaml

from .sources import SourceError, class_inputs, found_classes

# The subcommands and the modules whose main() they run; imported only when called, so that
# `imgclf predict` starts without the web stack and `imgclf serve` without the rest.
COMMANDS = {
    "predict": "imgclf.predict",
    "review": "imgclf.review",
    "clean": "imgclf.cleaner",
    "serve": "imgclf.serve",
}
# A data set split already (hymenoptera/train/ants/1.jpg, .../val/bees/2.jpg): the folder
# inside train/ or val/ is the class.
SPLIT_CLASS = r"^[^/]+/([^/]+)/"
# fastai's pets: a class name, an underscore, a number (Abyssinian_12.jpg, great_pyrenees_3.jpg).
NAME_NUMBER = r"^(?:.*/)?(.+)_\d+\.\w+$"


def starting_config(folder: str) -> tuple[dict, str]:
    """The config for a folder of photos, and how its classes were found: the sub-folders of
    its train and valid(ation) folders when it is split already (its split then kept), else
    its sub-folders, else the name_number file-name pattern."""
    root = Path(folder)
    splits = {child.name for child in root.iterdir() if child.is_dir()} if root.is_dir() else set()
    valid = next((name for name in ("val", "valid", "validation") if name in splits), None)
    tried = []
    for spec, how, extra in (
        (
            {"folder": folder, "pattern": SPLIT_CLASS},
            f"the class folders inside train/ and {valid}/, whose split is kept",
            {"split": {"valid_folder": valid}},
        ),
        ({"folder": folder}, "its sub-folders", {}),
        ({"folder": folder, "pattern": NAME_NUMBER}, "the file names (class_number.jpg)", {}),
    ):
        if extra and not ("train" in splits and valid):
            continue
        try:
            return {"classes_from": spec, **extra, "classes": found_classes(spec)}, how
        except SourceError as error:
            tried.append(str(error))
    raise SourceError(
        f"no classes found in {folder}: put each class's photos in a sub-folder of its name, "
        "or name them class_number.jpg (" + "; ".join(tried) + ")"
    )


def init(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="imgclf init",
        description="Write a starting config for a folder of photos: the classes are its "
        "sub-folders, or the names of its files (class_number.jpg); photo defaults (224 px, "
        "flips) come from the workflow. Then: snakemake --cores 4 --configfile CONFIG.",
    )
    parser.add_argument("folder", help="the folder of photos")
    parser.add_argument("--output", default="config.yaml", help="the config file to write")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.force:
        parser.error(f"{output} exists: give --output NEW.yaml, or --force to replace it")
    try:
        found, how = starting_config(args.folder)
    except SourceError as error:
        parser.exit(1, f"imgclf init: {error}\n")
    classes = found.pop("classes")
    # The workflow's own listing of each class's images (a shared folder listed once).
    images = class_inputs(classes)
    summary = ", ".join(f"{name} ({len(images[name])})" for name in classes)
    header = (
        f"# Written by `imgclf init {args.folder}` on {date.today()}: {len(classes)} classes "
        f"found from {how}.\n# Every other setting is the workflow's default for photos "
        "(224 px, flips); config.yaml of\n# the repository lists them all with comments.\n"
    )
    output.write_text(header + yaml.safe_dump(found, sort_keys=False))
    print(f"{output}: {len(classes)} classes: {summary}")
    print(f"next: snakemake --cores 4 --configfile {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "init":
        return init(rest)
    if command not in COMMANDS:
        print(f"imgclf: no command {command!r}; the commands: init, {', '.join(COMMANDS)}")
        return 2
    try:
        module = __import__(COMMANDS[command], fromlist=["main"])
    except ModuleNotFoundError as missing:  # the web stack is an extra the workflow never needs
        package = missing.name.split(".")[0]
        print(f"imgclf {command} needs {package}: pip install -e '.[serve]'", file=sys.stderr)
        return 1
    return module.main(rest, prog=f"imgclf {command}")


if __name__ == "__main__":
    sys.exit(main())
