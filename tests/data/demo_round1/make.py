"""Remake this folder from a finished ``make demo``: the first eight class averages of the demo's round 1.

    python tests/data/demo_round1/make.py results/demo

Writes ``class_averages.mrcs`` (float32, (8, 54, 54), the pixel size in the header) and
``classes.csv`` (class, estimated resolution in Å, distribution) next to this script.
"""

import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryosift.errors import InputError
from cryosift.pipeline.manifest import read_manifest

CLASSES = 8

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/data/demo_round1/make.py RESULTS_DIR (e.g. results/demo)")
    try:
        manifest = read_manifest(Path(sys.argv[1]) / "classify" / "demo" / "round1" / "classification.json")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    here = Path(__file__).resolve().parent
    with mrcfile.open(manifest["classes_mrcs"], permissive=True) as mrc:
        images, apix = np.asarray(mrc.data[:CLASSES], dtype=np.float32), float(mrc.voxel_size.x)
    with mrcfile.new(here / "class_averages.mrcs", overwrite=True) as mrc:
        mrc.set_data(images)
        mrc.voxel_size = apix
    classes = starfile.read(manifest["model_star"])["model_classes"].head(CLASSES)
    pd.DataFrame({"class": np.arange(1, CLASSES + 1), "resolution_A": classes["rlnEstimatedResolution"].to_numpy(),
                  "distribution": classes["rlnClassDistribution"].to_numpy()}).to_csv(here / "classes.csv", index=False)
