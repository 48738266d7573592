"""Rule export: the chosen stage as ONNX, checked with ONNX Runtime, and its model.json.

Inputs: split (split.csv) and pack (for validation images to check the export on); model (the
model.json and model.safetensors of the stages that final_model needs).
Params: job, final_model, max_pixels (verify's, for predict to refuse larger images).
Outputs: model (model.onnx), meta (model.json: how to feed it, the classes, its provenance).
"""

from pathlib import Path

from imgclf.export import export_model
from imgclf.files import write_bytes, write_json
from imgclf.job import choose_model, make_job
from imgclf.logs import setup_logging

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    exported = export_model(
        make_job(
            snakemake.input.split, snakemake.input.pack, snakemake.params.job, snakemake.threads
        ),
        choose_model(snakemake.params.final_model, snakemake.input.model),
        onnx_name=Path(snakemake.output.model).name,
        max_pixels=snakemake.params.max_pixels,
    )
    write_bytes(snakemake.output.model, exported.onnx)
    write_json(snakemake.output.meta, exported.meta)
