"""imgclf: the fastai image-classification workflow as plain functions, driven by Snakemake."""
