"""Glue between the Snakemake workflow and the library: datasets, ingest, manifests, re-extraction."""
