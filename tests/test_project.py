"""The project's own files agree with each other."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from .workflow import REPO


def test_the_conda_environment_pins_the_projects_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "workflow/envs/imgclf.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert sorted(entry for entry in pip if "==" in entry) == sorted(project)


HEAVY = {"torch", "onnxruntime", "timm", "torchvision"}


def test_planning_the_workflow_imports_no_model_library():
    """`snakemake -n` loads what the Snakefile and its rules import: none of it may pull in
    torch or onnxruntime, which take seconds to import and which the data half never needs."""
    sources = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    modules = sorted(
        {
            match.group(1)
            for source in sources
            for match in re.finditer(r"^from (imgclf[\w.]*) import", source.read_text(), re.M)
        }
    )
    assert "imgclf.files" in modules
    check = f"import sys, {', '.join(modules)}; print(sorted(set(sys.modules) & {HEAVY!r}))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_schemas_ship_inside_the_package():
    """A non-editable install validates configs from any folder: the schemas are package data."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "schemas/*.yaml" in project["package-data"]["imgclf"]
    from imgclf.config import schema

    for name in ("config", "labels"):
        assert Path(schema(name)).is_file()
        assert Path(schema(name)).parent == REPO / "imgclf" / "schemas"


def test_every_config_key_says_what_it_does():
    """The reference is only as good as its descriptions: a key without one is a blank row."""
    from imgclf.config import schema_keys

    undescribed = [key for key, node in schema_keys() if not node.get("description")]
    assert not undescribed, f"describe them in config.schema.yaml: {undescribed}"


def test_the_config_reference_is_the_schema_s():
    from imgclf.config import reference

    written = (REPO / "docs/config.md").read_text()
    assert written == reference(), "regenerate it: python -m imgclf.config > docs/config.md"
