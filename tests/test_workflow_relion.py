"""The whole workflow with ``engine: relion``, including the cross-platform mode.

A small cryoSPARC-origin 2D classification (``*_class_averages.cs`` with its ``*_particles.cs``)
runs through the whole DAG with real RELION binaries: round 1 scores its classes as they are,
its kept particles are converted to STAR and classified by RELION in round 2 and in the final
classification of the pool, and ab initio is RELION's SGD initial model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cryosift.io import read_particles_star
from cryosift.io.cs import read_cs

from .test_workflow_run import check, snakemake

pytestmark = [pytest.mark.relion, pytest.mark.skipif(shutil.which("relion_refine") is None,
                                                     reason="RELION is not installed (Debian/Ubuntu: apt-get install relion)")]

SPEC = {"name": "rl", "box": 56, "pixel_size": 2.5, "mass_kda": 80.0, "n_particles": 400, "snr": 0.5,
        "orientations": "views", "n_views": 4, "shift_sd_A": 3.0, "particles_per_micrograph": 50,
        "junk": {"empty_ice": 0.08, "ice_blob": 0.08, "aggregate": 0.04}, "seed": 11}
CONFIG = {
    "datasets": "config/datasets.tsv", "seed": 5, "device": "cpu", "engine": "relion",
    "classify": {"classes": 4, "final_classes": 4, "iterations": 6},
    "selection": {"cutoffs": [4.5]},
    "abinit": {"final_resolution": 20.0, "minibatch_initial": 50, "minibatch_final": 100,
               "extra": "--iterations 2 2 1"},
    "validate": {"reslog": False},
}


def cli(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "cryosift", *args], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def relion_run(tmp_path_factory):
    project = tmp_path_factory.mktemp("relion_wf")
    (project / "config").mkdir()
    (project / "config" / "rl.yaml").write_text(yaml.safe_dump(SPEC))
    # A cryoSPARC-origin 2D classification: the builtin engine writes one beside its RELION files.
    cli("simulate", "csdata", "--config", "config/rl.yaml", cwd=project)
    cli("classify2d", "csdata/particles.star", "-o", "csdata/J7", "--classes", "4", "--iterations", "5",
        "--seed", "3", "-j", "1", cwd=project)
    averages = sorted((project / "csdata" / "J7").glob("*_class_averages.cs"))[-1]
    (project / "config" / "datasets.tsv").write_text(
        "dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds\n"
        f"cs\tcryosparc\t{averages.relative_to(project)}\t\t\tcsdata/model.cif\t\t2\n")
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    check(snakemake(project, "--cores", "2", timeout=1500))
    return project


def test_relion_classifies_every_round_and_the_final_pool(relion_run):
    results = relion_run / "results"
    for ds, steps in (("cs", ("round2", "final")),):
        for step in steps:
            manifest = json.loads((results / "classify" / ds / step / "classification.json").read_text())
            assert manifest["engine"] == "relion"
            # relion_refine's own files: the command line it ran and its optimiser.star.
            job = results / "classify" / ds / step
            assert (job / "run_it006_optimiser.star").exists()
            scores = pd.read_csv(results / "score" / ds / step / "scores.csv")
            assert len(scores) == 4 and scores["score"].between(0.5, 6.0).all()
    # Round 1 of the cryoSPARC dataset scored the cryoSPARC classes (no classification of its own).
    assert not (results / "classify" / "cs" / "round1").exists()
    cs_round1 = json.loads((results / "select" / "cs" / "round1" / "selection.json").read_text())
    assert cs_round1["particles"]["total"] == SPEC["n_particles"]


def images(pset) -> set[str]:
    """``index@absolute stack path`` per particle (engines rewrite the stack names)."""
    index, paths = pset.image_locations()
    return {f"{i}@{Path(p).resolve()}" for i, p in zip(index, paths)}


def test_cross_platform_particles_reach_relion_as_star(relion_run):
    """The cryoSPARC particles RELION classified are the same images, in STAR form."""
    results = relion_run / "results"
    source = read_cs(next((relion_run / "csdata" / "J7").glob("*_particles.cs")))
    pooled = read_particles_star(results / "pool" / "cs" / "particles.star")
    assert 0 < len(pooled) <= len(source)
    data = sorted((results / "classify" / "cs" / "final").glob("run_it*_data.star"))[-1]
    classified = read_particles_star(data)
    assert len(classified) == len(pooled)
    assert images(classified) == images(pooled)
    assert classified.particles["rlnClassNumber"].between(1, 4).all()


def test_relion_initial_model_is_validated_per_cutoff(relion_run):
    results = relion_run / "results"
    for ds in ("cs",):
        kept = read_particles_star(results / "extract" / ds / "cutoff4.5" / "particles.star")
        assert len(kept) > 0
        assert any((results / "abinit" / ds / "cutoff4.5" / "relion").glob("run_it*_class001.mrc"))
        poses = read_particles_star(results / "abinit" / ds / "cutoff4.5" / "abinit_particles.star")
        assert len(poses) == len(kept) and "rlnAngleTilt" in poses.particles
        validation = json.loads((results / "validate" / ds / "cutoff4.5" / "validation.json").read_text())
        assert validation["particles_kept"] == len(kept)
        # A 20 Å-limited SGD model of a 40 px box: correlated with the truth at low resolution.
        assert validation["fsc05_model_A"] is not None and validation["fsc05_model_A"] < 80.0
    table = pd.read_csv(results / "report" / "comparison.csv")
    assert set(table["dataset"]) == {"cs"}
