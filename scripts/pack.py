"""Rule pack: decode every verified image once, at the model's size, into one flat file.

Input: manifest (verify's).
Outputs: images (images.u8: each image's training and validation views, raw uint8), index
(index.npz: ids, offsets and shapes). Labels play no part, so a labels edit does not rerun it.
"""

from imgclf.files import read_csv
from imgclf.logs import setup_logging
from imgclf.pack import write_pack


def main(manifest: str, outputs, size: int, threads: int) -> None:
    table = read_csv(manifest)
    write_pack(
        table["path"].tolist(), table["id"].tolist(), size, outputs.images, outputs.index, threads
    )


if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output,
        int(snakemake.wildcards.size),
        snakemake.threads,
    )
