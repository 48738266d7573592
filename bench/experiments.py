"""Two experiments side by side against the same two run one after the other.

    python -m bench.experiments [--repeats 3] [--cores 2]

On the demo (config.yaml's digits), with two experiments: `lite0` (config.yaml as it is) and
`lite0_longer` (train_stage1: 6 epochs instead of 4). The data stages run once, untimed; each
repeat then times, from copies of that folder:
- together: one `snakemake --cores N` with both experiments (training, interpret and export of
  each, then compare and choose_experiment), the jobs of the two sharing the cores;
- one after the other: what a user does without experiments, two runs of the plain workflow,
  each with one experiment's settings as its config and all the cores.
The order of the two alternates between repeats. It prints each repeat's seconds and the ratio
(one after the other / together: above 1 means side by side is faster).
"""

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import yaml

from bench.common import run_workflow
from imgclf.config import merge

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = {"lite0": {}, "lite0_longer": {"train_stage1": {"epochs": 6}}}


def with_config(shared: Path, folder: Path, config: dict) -> Path:
    """A copy of the folder whose data stages ran (times kept), given `config`."""
    shutil.copytree(shared, folder, symlinks=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def together(shared: Path, scratch: Path, config: dict, cores: int) -> float:
    folder = with_config(shared, scratch / "together", {**config, "experiments": EXPERIMENTS})
    return run_workflow(folder, cores)


def one_after_the_other(shared: Path, scratch: Path, config: dict, cores: int) -> list[float]:
    return [
        run_workflow(with_config(shared, scratch / name, merge(config, overrides)), cores)
        for name, overrides in EXPERIMENTS.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        shared = Path(folder) / "shared"
        shared.mkdir()
        both = {**config, "experiments": EXPERIMENTS}
        (shared / "config.yaml").write_text(yaml.safe_dump(both, sort_keys=False))
        run_workflow(shared, args.cores, "results/audit/audit.csv")
        for repeat in range(args.repeats):
            scratch = Path(folder) / f"repeat{repeat}"
            if repeat % 2 == 0:
                side_by_side = together(shared, scratch, config, args.cores)
                in_turn = one_after_the_other(shared, scratch, config, args.cores)
            else:
                in_turn = one_after_the_other(shared, scratch, config, args.cores)
                side_by_side = together(shared, scratch, config, args.cores)
            ratios.append(sum(in_turn) / side_by_side)
            print(
                f"repeat {repeat}: together {side_by_side:.0f} s; one after the other "
                f"{sum(in_turn):.0f} s ({' + '.join(f'{s:.0f}' for s in in_turn)} s); "
                f"ratio {ratios[-1]:.2f}x",
                flush=True,
            )
            shutil.rmtree(scratch)
    print(
        f"two experiments with --cores {args.cores}: one after the other / together, median "
        f"{statistics.median(ratios):.2f}x (runs: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
