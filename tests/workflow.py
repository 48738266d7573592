"""Running the real workflow in a scratch folder, as a user would."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


# A process that holds the workflow's run lock in its working folder, as a run does, until
# killed; it prints "held" once it has it.
HOLD_RUN_LOCK = """
import time
from imgclf.files import RunLock
from imgclf.layout import RUN_LOCK
lock = RunLock(RUN_LOCK)
lock.acquire()
print("held", flush=True)
time.sleep(300)
"""


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """Snakemake on this repository's workflow in `workdir`, with workdir's config."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's workflow in `workdir`; its config is workdir's."""
    command = snakemake_command(workdir, *args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def planned_rules(workdir: Path, *targets: str) -> set[str]:
    """The rules a dry run would run (`all` aside)."""
    result = snakemake(workdir, "-n", *targets, "--quiet", "rules")
    lines = result.stdout.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("Job stats")]
    rules = set()
    for line in lines[starts[0] + 3 :] if starts else []:
        if not line.strip():
            break
        rules.add(line.split()[0])
    return rules - {"all", "total"}


def planned_jobs(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """The jobs a dry run would run (`all` aside): (rule, its wildcards as Snakemake prints
    them, '' for none)."""
    result = snakemake(workdir, "-n", *args)
    jobs = []
    for line in (result.stdout + result.stderr).splitlines():
        if match := re.fullmatch(r"(?:local)?rule (\w+):", line):
            jobs.append([match[1], ""])
        elif match := re.fullmatch(r"\s+wildcards: (.+)", line):
            jobs[-1][1] = match[1]
    return {(rule, wildcards) for rule, wildcards in jobs if rule != "all"}
