#!/usr/bin/env bash
# The demo: simulate a small dataset with ground truth, convert its particles to cryoSPARC and
# back, and summarise every file. Outputs go to results/demo/.
set -euo pipefail
OUT=${1:-results/demo}
mkdir -p "$OUT"

echo "== simulating a dataset (tiny preset: 240 images, 40 px, labelled junk) into $OUT/sim"
cryosift simulate "$OUT/sim" --preset tiny

echo "== RELION STAR -> cryoSPARC .cs -> RELION STAR (beside the stack: image paths are relative to it)"
cryosift convert star2cs "$OUT/sim/particles.star" "$OUT/sim/particles_converted.cs" --double
cryosift convert cs2star "$OUT/sim/particles_converted.cs" "$OUT/sim/particles_roundtrip.star"

echo "== what is in the files"
cryosift info --check "$OUT/sim/particles.star" "$OUT/sim/particles_converted.cs" "$OUT/sim/particles.mrcs" "$OUT/sim/map.mrc"

echo "== ground truth"
python - "$OUT/sim/ground_truth.csv" <<'PY'
import sys

import pandas as pd

truth = pd.read_csv(sys.argv[1])
print(truth["label"].value_counts().to_string())
PY
echo "Demo outputs are in $OUT/"
