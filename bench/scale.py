"""Cost growth with the number of images: the whole workflow on synthetic photo sets of N.

    python -m bench.scale [--sizes 1000 10000 100000] [--classes 10] [--side 500] [--square]
                          [--image-size 128] [--cores 2] [--work /tmp/imgclf-scale]

For each N it writes N photo-like JPEGs (about `side` px, `classes` folders; kept in --work
for the next run), runs the workflow to its export and diagnosis with short training (1 + 1
epochs at --image-size, auto rates, the schema's defaults otherwise) and prints, for every
rule, its seconds, seconds per image and peak anonymous memory (RssAnon, sampled every 0.2 s:
the memory that the page cache of a memory-mapped file does not count in), then the ratio of
each rule's seconds per image between consecutive sizes (target: at most 1.5) and, for
verify and pack, the rate of their first and last thousand images (from their progress
bars; target: within 1.5x). A plot of both against N goes to --work/scale.png. Run it alone:
it is a measurement of the machine.
"""

import argparse
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import psutil
import yaml
from matplotlib.figure import Figure

from .common import SNAKEFILE, photo_like

TINTS = [(60 * (i % 3) - 60, 60 * (i // 3 % 3) - 60, 40 * (i // 9 % 3) - 40) for i in range(27)]
# Which script each rule runs; a script that serves two rules (train.py, lr_find.py) runs them
# one after the other (stage 2 needs stage 1), so its processes are told apart by start order.
SCRIPT_RULES = {
    "verify": ["verify"],
    "pack": ["pack"],
    "features": ["features"],
    "split": ["split"],
    "audit": ["audit"],
    "lr_find": ["lr_find stage1", "lr_find stage2"],
    "train": ["train_stage1", "finetune_stage2"],
    "interpret": ["interpret"],
    "export": ["export"],
    "fetch_urls": ["fetch_urls"],
    "download": ["download"],
}


def write_photo(job: tuple[Path, int, int, int, bool]) -> None:
    path, seed, side, tint, square = job
    if not path.exists():
        # 3:5 to square, as photos come; or all square, as Kaggle's resized sets
        height = side if square else round(side * (0.6 + 0.4 * (seed % 5) / 4))
        photo_like(seed, (side, height), TINTS[tint]).save(path, quality=90)


def write_set(folder: Path, count: int, classes: int, side: int, square: bool) -> None:
    jobs = []
    for index in range(count):
        label = index % classes
        path = folder / f"class{label:03d}" / f"{index:06d}.jpg"
        jobs.append((path, index, side, label % len(TINTS), square))
    for label in range(classes):
        (folder / f"class{label:03d}").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(write_photo, jobs, chunksize=256))


def config(folder: Path, classes: int, image_size: int) -> dict:
    return {
        "classes": {
            f"class{label:03d}": {"folder": str(folder / f"class{label:03d}")}
            for label in range(classes)
        },
        "model": {"image_size": image_size},
        "train_stage1": {"epochs": 1, "max_lr": "auto"},
        "finetune_stage2": {"epochs": 1, "max_lr": "auto"},
    }


class MemorySampler:
    """Peak RssAnon of each job that Snakemake starts, by the script it runs."""

    def __init__(self, runner: subprocess.Popen):
        self.runner = psutil.Process(runner.pid)
        self.peaks: dict[int, tuple[str, float, int]] = {}  # pid -> (script, started, bytes)
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while self.runner.is_running() and self.runner.status() != psutil.STATUS_ZOMBIE:
            try:
                children = self.runner.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    scripts = (re.search(r"\.(\w+)\.py$", part) for part in child.cmdline())
                    script = next((match[1] for match in scripts if match), None)
                    if script is None:
                        continue
                    status = Path(f"/proc/{child.pid}/status").read_text()
                    anonymous = int(re.search(r"RssAnon:\s+(\d+)", status)[1]) * 1024
                except (psutil.NoSuchProcess, FileNotFoundError, TypeError):
                    continue
                _, started, peak = self.peaks.get(child.pid, (script, child.create_time(), 0))
                self.peaks[child.pid] = (script, started, max(peak, anonymous))
            time.sleep(0.2)

    def by_rule(self) -> dict[str, int]:
        peaks: dict[str, int] = {}
        order: dict[str, int] = {}
        for script, _, peak in sorted(self.peaks.values(), key=lambda item: item[1]):
            rules = SCRIPT_RULES.get(script, [script])
            if len(rules) == 1:
                rule = rules[0]
            else:
                rule = rules[min(order.get(script, 0), len(rules) - 1)]
                order[script] = order.get(script, 0) + 1
            peaks[rule] = max(peaks.get(rule, 0), peak)
        return peaks


def rule_seconds(workdir: Path) -> dict[str, float]:
    """Seconds of each rule from its benchmark files (per-class rules summed)."""
    seconds: dict[str, float] = {}
    for tsv in (workdir / "benchmarks").rglob("*.tsv"):
        rule = tsv.parent.name
        if rule == "lr_find":
            rule = f"lr_find {tsv.stem}"
        seconds[rule] = seconds.get(rule, 0.0) + float(pd.read_csv(tsv, sep="\t")["s"].sum())
    return seconds


def progress_rates(log: Path, window: int = 1000) -> tuple[float, float] | None:
    """Images a second over the first and the last `window` images, read from a tqdm bar."""
    if not log.exists():
        return None
    points = []
    for done, total, elapsed in re.findall(r"(\d+)/(\d+) \[([\d:]+)<", log.read_text()):
        parts = [int(part) for part in elapsed.split(":")]
        seconds = sum(part * 60**power for power, part in enumerate(reversed(parts)))
        points.append((int(done), int(total), seconds))
    if len(points) < 3 or points[-1][1] < 2 * window:
        return None
    total = points[-1][1]
    first = next(point for point in points if point[0] >= window)
    last_start = max(
        (point for point in points if point[0] <= total - window), key=lambda point: point[0]
    )
    end = points[-1]
    if first[2] == 0 or end[2] == last_start[2]:
        return None
    return first[0] / first[2], (end[0] - last_start[0]) / (end[2] - last_start[2])


def run(workdir: Path, cores: int) -> tuple[float, dict[str, int]]:
    command = [
        *(sys.executable, "-m", "snakemake", "--cores", str(cores)),
        *("--snakefile", str(SNAKEFILE), "--directory", str(workdir)),
        *("--configfile", str(workdir / "config.yaml")),
    ]
    started = time.perf_counter()
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = MemorySampler(runner)
    output, _ = runner.communicate()
    if runner.returncode != 0:
        sys.exit(f"the workflow failed in {workdir}:\n{output[-4000:]}")
    return time.perf_counter() - started, sampler.by_rule()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--side", type=int, default=500)
    parser.add_argument("--square", action="store_true", help="square photos (else 3:5 to 1:1)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/imgclf-scale"))
    args = parser.parse_args()

    rows = []
    for count in args.sizes:
        shape = f"{args.side}{'-square' if args.square else ''}-{args.classes}"
        photos = args.work / f"photos-{count}-{shape}"
        started = time.perf_counter()
        write_set(photos, count, args.classes, args.side, args.square)
        took = time.perf_counter() - started
        print(f"{count} photos of {args.side} px in {photos} ({took:.0f} s)")
        workdir = args.work / f"run-{count}-{shape}-{args.image_size}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.yaml").write_text(
            yaml.safe_dump(config(photos, args.classes, args.image_size))
        )
        wall, memory = run(workdir, args.cores)
        print(f"{count} images: the whole run took {wall:.0f} s ({wall / 60:.1f} min)")
        for rule, seconds in sorted(rule_seconds(workdir).items()):
            rows.append(
                {
                    "images": count,
                    "rule": rule,
                    "seconds": seconds,
                    "ms_per_image": 1000 * seconds / count,
                    "anon_mb": memory.get(rule, 0) / 1e6,
                }
            )
        whole = {"seconds": wall, "ms_per_image": 1000 * wall / count, "anon_mb": float("nan")}
        rows.append({"images": count, "rule": "whole run", **whole})
        logs = {"verify": "verify/verify.log", "pack": f"pack/{args.image_size}.log"}
        for rule, log in logs.items():
            rates = progress_rates(workdir / "logs" / log)
            if rates:
                first, last = rates
                print(
                    f"{count} images, {rule}: first 1000 at {first:.0f} images/s, "
                    f"last 1000 at {last:.0f} images/s ({first / last:.2f}x)"
                )
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(table.pivot(index="rule", columns="images", values=["ms_per_image", "anon_mb"]).round(2))
    sizes = sorted(table["images"].unique())
    for small, large in zip(sizes, sizes[1:], strict=False):
        per_image = table.pivot(index="rule", columns="images", values="ms_per_image")
        ratio = (per_image[large] / per_image[small]).round(2)
        worst = ratio.drop("whole run", errors="ignore").max()
        print(f"seconds per image, {large} against {small}: worst {worst} (target <= 1.5)")
        print(ratio.to_string())
    plot(table, args.work / "scale.png")
    print(f"plot: {args.work / 'scale.png'}")


def plot(table: pd.DataFrame, path: Path) -> None:
    figure = Figure(figsize=(12, 5))
    time_axes, memory_axes = figure.subplots(1, 2)
    for rule, rows in table[table["rule"] != "whole run"].groupby("rule"):
        time_axes.plot(rows["images"], rows["ms_per_image"], marker="o", label=rule)
        memory_axes.plot(rows["images"], rows["anon_mb"], marker="o", label=rule)
    for axes, label in ((time_axes, "ms per image"), (memory_axes, "peak RssAnon, MB")):
        axes.set_xscale("log")
        axes.set_xlabel("images")
        axes.set_ylabel(label)
    time_axes.set_yscale("log")
    memory_axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
