"""Benchmark of lr_find at the demo's settings (config.yaml).

    python -m bench.lr_find [--seeds 0 1] [--threads 2]

For each stage: lr_find's time as a multiple of one training epoch of the same stage
(target: at most 2), and its suggestion with two seeds (target: within a factor of 2).
"""

import argparse
import os
import time
from pathlib import Path

from imgclf import lr_find
from imgclf.train import OneCycleSettings, fit_one_cycle, save_weights

from .demo_data import demo_job, temporary_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with temporary_folder() as folder:
        folder = Path(folder)
        suggestions = {"stage1": [], "stage2": []}
        for seed in args.seeds:
            job, config = demo_job(folder, args.threads, seed)
            train_loader, valid_loader, device = job.start()
            settings = lr_find.LrFindSettings(**config["lr_find"])
            # Stage 2's sweep starts from a trained stage 1, as in the workflow.
            stage1 = job.build()
            stage1_config = dict(config["train_stage1"])
            stage1_lr = stage1_config.pop("max_lr")
            stage1_settings = OneCycleSettings(**stage1_config)
            fit_one_cycle(
                stage1,
                train_loader,
                valid_loader,
                [stage1_lr] * 3,
                stage1_settings,
                "stage1",
                device,
            )
            weights = folder / f"stage1-{seed}.safetensors"
            save_weights(stage1, weights)
            for stage in ["stage1", "stage2"]:
                model = job.build() if stage == "stage1" else job.build(str(weights))
                training = config["train_stage1" if stage == "stage1" else "finetune_stage2"]
                # As the workflow sweeps: stage 1 on the head, stage 2 up to stage 1's rate.
                swept = settings if stage == "stage1" else lr_find.up_to(settings, stage1_lr)
                started = time.perf_counter()
                result = lr_find.sweep(
                    model,
                    train_loader,
                    swept,
                    device,
                    training["weight_decay"],
                    training["moms"][0],
                    body_frozen=stage == "stage1",
                )
                sweep_seconds = time.perf_counter() - started
                suggestion = lr_find.suggest(result)[settings.suggestion]
                suggestions[stage].append(suggestion)
                one_epoch = OneCycleSettings(1, 25, 0.3, training["moms"], 0.01)
                model = job.build() if stage == "stage1" else job.build(str(weights))
                started = time.perf_counter()
                fit_one_cycle(
                    model, train_loader, valid_loader, [1e-4] * 3, one_epoch, stage, device
                )
                epoch_seconds = time.perf_counter() - started
                print(
                    f"lr_find {stage} seed {seed}: {len(result.table)} batches, "
                    f"{sweep_seconds / epoch_seconds:.2f} epochs' time (target <= 2), "
                    f"{settings.suggestion} {suggestion:.2e}"
                )
        for stage, values in suggestions.items():
            spread = max(values) / min(values)
            verdict = "met" if spread <= 2 else "NOT met"
            print(
                f"lr_find {stage}: suggestions {', '.join(f'{v:.2e}' for v in values)}; "
                f"spread {spread:.2f}x (target <= 2): {verdict}"
            )


if __name__ == "__main__":
    main()
