"""Shared by the benchmarks: each prints a ratio against a baseline measured in the same run."""

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SNAKEFILE = Path(__file__).resolve().parents[1] / "Snakefile"


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def photo_like(seed: int, size: tuple[int, int], tint: tuple[int, int, int] = (0, 0, 0)):
    """Smooth shapes with fine grain: compresses and decodes like a photo, unlike pure noise.
    `tint` shifts its colours, so that images of one tint form a class a model can learn."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain + np.array(tint), 0, 255).astype(np.uint8))


def run_workflow(workdir: Path, cores: int, *arguments: str) -> float:
    """Seconds that `snakemake *arguments` took in workdir, on its config.yaml; a failure ends
    the bench with the end of Snakemake's output."""
    command = [
        *(sys.executable, "-m", "snakemake", *arguments, "--cores", str(cores)),
        *("--snakefile", str(SNAKEFILE), "--directory", str(workdir)),
        *("--configfile", str(workdir / "config.yaml")),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the workflow failed in {workdir}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def report(name: str, ours: list[float], baseline: list[float], items: int, target: float):
    """Print rates and the median ratio of paired runs (ours vs baseline, same machine state)."""
    ratios = [base / mine for mine, base in zip(ours, baseline, strict=True)]
    ratio = statistics.median(ratios)
    print(
        f"{name}: {items / statistics.median(ours):.1f} items/s vs baseline "
        f"{items / statistics.median(baseline):.1f} items/s"
    )
    print(
        f"{name}: ratio {ratio:.2f}x (runs: {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"target >= {target}x: {'met' if ratio >= target else 'NOT met'}"
    )


def write_export(folder: Path, model, classes: list[str], size: int) -> None:
    """An export folder as the workflow writes one (model.onnx, model.json's fields that
    Predictor and the server read) for a torch model, trained or not."""
    import json

    from imgclf.export import to_onnx

    (folder / "model.onnx").write_bytes(to_onnx(model, size)[0])
    meta = {
        "file": "model.onnx",
        "classes": classes,
        "image_size": size,
        "input": {"name": "images"},
        "output": {"name": "probabilities"},
    }
    (folder / "model.json").write_text(json.dumps(meta))
