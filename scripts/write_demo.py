"""Rule write_demo: write the offline demo images to a folder per class.

Inputs: none (scikit-learn's bundled digits).
Output: a folder with a subfolder of PNGs per class.
"""

from imgclf.demo import write_digits
from imgclf.logs import setup_logging

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    write_digits(snakemake.output[0])
