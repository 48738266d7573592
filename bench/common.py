"""Shared by the benchmarks: each prints a ratio against a baseline measured in the same run."""

import statistics
import time
from collections.abc import Callable


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
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
