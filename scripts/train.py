"""Rules train_stage1 and finetune_stage2: train one stage of the model (params.stage).

Inputs: split (split.csv); pack (its images file and index); lr_find ({stage}.json, when the
stage's max_lr is auto); finetune_stage2 also stage1_weights and stage1_meta (stage 1's
model.safetensors, model.json).
Outputs: weights (model.safetensors), meta (model.json), history and steps (CSV), losses and
schedule (PNG); train_stage1 also batch (PNG, a training batch as the model sees it).
Params: checkpoint, where each epoch's state is kept until the outputs are written, so that a
killed job's rerun resumes (see imgclf/checkpoint.py).
"""

from pathlib import Path

from imgclf.files import write_csv, write_json
from imgclf.job import make_job
from imgclf.logs import setup_logging
from imgclf.plots import plot_losses, plot_schedule, save_figure
from imgclf.stages import TrainedStage, train_stage
from imgclf.train import FrozenStageSettings, OneCycleSettings, save_weights


def write_stage(trained: TrainedStage, stage: str, outputs) -> None:
    write_csv(outputs.history, trained.history)
    write_csv(outputs.steps, trained.steps)
    save_figure(plot_losses(trained.history, trained.steps, f"{stage}: losses"), outputs.losses)
    save_figure(plot_schedule(trained.steps, f"{stage}: one-cycle schedule"), outputs.schedule)
    if trained.sample_batch is not None:
        save_figure(trained.sample_batch, outputs.batch)
    write_json(outputs.meta, trained.meta)
    save_weights(trained.model, outputs.weights)  # last, so its presence means the stage finished


def main(inputs, outputs, params, threads: int) -> None:
    settings = dict(params.settings)
    max_lr = settings.pop("max_lr")
    stage_settings = FrozenStageSettings if params.stage == "stage1" else OneCycleSettings
    trained = train_stage(
        make_job(inputs.split, inputs.pack, params.job, threads),
        params.stage,
        stage_settings(**settings),
        max_lr,
        lr_find_json=inputs.lr_find[0] if inputs.lr_find else None,
        stage1_weights=inputs.get("stage1_weights"),
        stage1_meta=inputs.get("stage1_meta"),
        checkpoint_path=params.checkpoint,
    )
    write_stage(trained, params.stage, outputs)
    Path(params.checkpoint).unlink(missing_ok=True)  # the stage is done: nothing to resume


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(snakemake.input, snakemake.output, snakemake.params, snakemake.threads)
