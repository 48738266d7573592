"""Rule interpret: where the chosen model goes wrong (fastai's ClassificationInterpretation).

Inputs: split (split.csv); pack (its images file and index); audit (audit.csv, whose issues
head the review queue); model (the model.json and model.safetensors of the stages that
final_model needs).
Outputs: confusion_csv, confusion_png, most_confused, per_class (CSV), metrics (JSON),
top_losses (PNG), review (the queue: the audit's sure finds, then its other finds and the
`review` images of lowest held-out probability of their label, each with an empty decision
column, CSV).
"""

from imgclf.files import read_csv, write_csv, write_json
from imgclf.interpret import InterpretSettings, interpret
from imgclf.job import choose_model, make_job
from imgclf.logs import setup_logging
from imgclf.plots import save_figure

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    diagnosis = interpret(
        make_job(
            snakemake.input.split, snakemake.input.pack, snakemake.params.job, snakemake.threads
        ),
        choose_model(snakemake.params.final_model, snakemake.input.model),
        read_csv(snakemake.input.audit),
        InterpretSettings(**snakemake.params.settings),
    )
    outputs = snakemake.output
    write_csv(outputs.confusion_csv, diagnosis.confusion.reset_index())
    save_figure(diagnosis.confusion_plot, outputs.confusion_png)
    write_csv(outputs.most_confused, diagnosis.most_confused)
    write_csv(outputs.per_class, diagnosis.per_class)
    write_json(outputs.metrics, diagnosis.metrics)
    save_figure(diagnosis.top_losses, outputs.top_losses)
    write_csv(outputs.review, diagnosis.review)
