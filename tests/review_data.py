"""A small workflow results folder for the review tests: one dataset, round 1 and final, scored and selected."""

import json
import os
from pathlib import Path

from cryosift.pipeline.manifest import classified_particles, score_classification, write_manifest
from cryosift.selection import SelectionPolicy, apply_final, apply_round
from tests.test_scoring_data import make_relion_job

CUTOFFS = (2.5, 3.5, 4.5)


def make_results(root: Path, k: int = 8, dataset: str = "ds1") -> Path:
    """``root/results`` laid out as the workflow lays it out; scored by the shipped model.

    Round 1 and the final step share one RELION Class2D job (``root/Class2D/job003``), as a
    final classification that reused the last round's would.
    """
    job = make_relion_job(root, k=k, box=40, n_particles=200, seed=4)
    results = root / "results"
    (results).mkdir(parents=True, exist_ok=True)
    (results / "run_info.json").write_text(json.dumps({"config": {"selection": {"cutoffs": list(CUTOFFS)}}}))
    cwd = os.getcwd()
    os.chdir(root)  # the workflow scores from the project folder; image names are relative to it
    try:
        for step in ("round1", "final"):
            manifest = results / "classify" / dataset / step / "classification.json"
            manifest.parent.mkdir(parents=True, exist_ok=True)
            write_manifest(manifest, "relion", job)
            out = score_classification(manifest, "default", results / "score" / dataset / step / "scores.star",
                                       device="cpu")
            sel = results / "select" / dataset / step
            if step == "final":
                apply_final(classified_particles(manifest), out.csv, sel, cutoffs=CUTOFFS, formats=["star"])
            else:
                apply_round(classified_particles(manifest), out.csv, sel, round=1, rounds=3, policy=SelectionPolicy(), formats=["star"])
    finally:
        os.chdir(cwd)
    return results
