"""Rule overview: the report's first page, the run in one screen.

Inputs: summary and rejected (verify's), meta (the model.json of the export that went
forward), most_confused (interpret's, of each experiment), review (the review queue).
Params: most_confused, experiment ('' without experiments) -> its file: the chosen one's is read.
Output: overview.html.
"""

from imgclf.files import read_csv, read_json, write_text
from imgclf.logs import setup_logging
from imgclf.overview import overview_html

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    inputs = snakemake.input
    meta = read_json(inputs.meta)
    page = overview_html(
        read_csv(inputs.summary),
        read_csv(inputs.rejected),
        meta,
        read_csv(snakemake.params.most_confused[meta.get("experiment", "")]),
        len(read_csv(inputs.review)),
    )
    write_text(snakemake.output[0], page)
