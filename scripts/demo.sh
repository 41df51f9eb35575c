#!/usr/bin/env bash
# The demo: the whole workflow on one simulated dataset with ground truth (the `demo` row of
# config/datasets.tsv, config/demo_dataset.yaml: 3,000 images of a 120 kDa pseudo-protein in
# 12 views, 64 px, a third of them junk),
# with the builtin engine: iterative 2D classification, scoring and selection, per-cutoff ab
# initio and validation against the true model, the comparison table, plots and HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
CORES=${CORES:-2}
SMK=(snakemake --snakefile workflow/Snakefile --profile profiles/local --cores "$CORES"
     --configfile config/config.yaml config/demo.yaml)

start=$(date +%s)
"${SMK[@]}"
"${SMK[@]}" --report results/demo/report.html
echo
echo "== comparison per score cutoff (results/demo/report/comparison.md)"
cat results/demo/report/comparison.md
echo
echo "Finished in $(( $(date +%s) - start )) s."
echo "Report: $(pwd)/results/demo/report.html   plots: results/demo/report/plots/"
