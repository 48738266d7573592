"""The project's own files agree with each other."""

import tomllib

import yaml

from .workflow import REPO


def test_the_conda_environment_pins_the_projects_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "workflow/envs/imgclf.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert sorted(entry for entry in pip if "==" in entry) == sorted(project)
