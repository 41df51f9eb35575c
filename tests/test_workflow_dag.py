"""The workflow's DAG: rule counts per round and cutoff for one and three datasets (dry runs)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.workflow_plan import dry_run as plan
from tests.workflow_plan import job_counts

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"


def write_project(tmp_path, rows, **config):
    (tmp_path / "config").mkdir(exist_ok=True)
    sheet = ["dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds"]
    sheet += ["\t".join(str(v) for v in row) for row in rows]
    (tmp_path / "config" / "datasets.tsv").write_text("\n".join(sheet) + "\n")
    cfg = {"datasets": "config/datasets.tsv", **config}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def dry_run(workdir, *extra):
    """Jobs per rule of the dry run's plan."""
    jobs, _ = plan(workdir, "--cores", "2", *extra)
    return job_counts(jobs)


def spec(tmp_path, name, box, pixel_size):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "box": box, "pixel_size": pixel_size, "mass_kda": 150.0,
                                    "n_particles": 100}))
    return path


def test_one_dataset_dag(tmp_path):
    counts = dry_run(write_project(tmp_path, [["demo", "simulated", "demo", "", "", "", "", ""]]))
    rounds, cutoffs = 5, 3  # box 64 px < 200 -> five rounds
    assert counts["simulate"] == 1 and counts["ingest"] == 1
    assert counts["classify"] == rounds + 1 and counts["score"] == rounds + 1
    assert counts["select_round"] == rounds and counts["pool"] == 1 and counts["select_final"] == 1
    assert counts["extract"] == counts["abinit"] == counts["validate"] == cutoffs
    assert counts["summarize"] == 1 and counts["report"] == 1


def test_three_datasets_dag(tmp_path):
    rows = [
        ["small", "simulated", spec(tmp_path, "small", 64, 3.0), "", "", "", "", ""],        # 5 rounds
        ["medium", "simulated", spec(tmp_path, "medium", 256, 1.0), "", "", "", "", ""],     # 3 rounds
        ["large", "simulated", spec(tmp_path, "large", 320, 1.0), "", "", "", "", "2"],      # 2 rounds (row)
    ]
    counts = dry_run(write_project(tmp_path, rows, selection={"cutoffs": [3.5, 4.5]}))
    rounds = 5 + 3 + 2
    assert counts["simulate"] == 3 and counts["ingest"] == 3
    assert counts["classify"] == rounds + 3 and counts["score"] == rounds + 3 and counts["select_round"] == rounds
    assert counts["extract"] == counts["abinit"] == counts["validate"] == 3 * 2
    assert counts["summarize"] == 3 and counts["report"] == 1


def test_classified_source_skips_round_one_classification(tmp_path):
    from tests.test_io_star import _class2d_iteration

    job = tmp_path / "Class2D" / "job004"
    _class2d_iteration(job, 25, k=3, box=8)
    counts = dry_run(write_project(tmp_path, [["mine", "relion", job, "", "150", "", "", "2"]]))
    assert counts["classify"] == 2 and counts["score"] == 3  # round 2 + final classified; all scored
    assert counts["ingest_classified"] == 1 and "simulate" not in counts


def test_config_is_validated(tmp_path):
    write_project(tmp_path, [["demo", "simulated", "demo", "", "", "", "", ""]], engine="gromacs")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(SNAKEFILE), "--directory",
                           str(tmp_path), "--cores", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "gromacs" in proc.stdout + proc.stderr


def test_missing_scoring_model_is_named(tmp_path):
    write_project(tmp_path, [["demo", "simulated", "demo", "", "", "", "", ""]], score={"model": "mine.pt"})
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(SNAKEFILE), "--directory",
                           str(tmp_path), "--cores", "1"], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "mine.pt: scoring checkpoint not found (config score.model" in out, out[-2000:]
    # Training makes a model: a missing scoring checkpoint does not stop `snakemake train`.
    counts = dry_run(tmp_path, "train", "--config", "train={datasets: 2, heldout: 1}")
    assert counts["train_simulate"] == counts["train_grade"] == 3 and counts["train_model"] == 1, counts


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(SNAKEFILE), "--directory",
                           str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_training_numbers_skip_the_heldout_structures(tmp_path):
    # More training data must not move the held-out structures: the training datasets are the
    # first numbers outside the held-out range, and the model trains on exactly those.
    write_project(tmp_path, [["demo", "simulated", "demo", "", "", "", "", ""]])
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(SNAKEFILE), "--directory",
                           str(tmp_path), "--cores", "1", "train", "--config",
                           "train={datasets: 3, heldout: 2, heldout_first: 1}"],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    simulated = {(kind, int(i)) for kind, i in re.findall(r"results/train/(data|heldout)/ds(\d{4})/settings\.json", out)}
    assert simulated == {("data", 0), ("data", 3), ("data", 4), ("heldout", 1), ("heldout", 2)}
    train_cmd = next(line for line in out.splitlines() if "cryosift train --data" in line)
    assert re.findall(r"results/train/data/ds(\d{4})", train_cmd) == ["0000", "0003", "0004"], train_cmd
    quality_cmd = next(line for line in out.splitlines() if "score_quality.py --data" in line)
    assert re.findall(r"results/train/heldout/ds(\d{4})", quality_cmd) == ["0001", "0002"], quality_cmd
    bad = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(SNAKEFILE), "--directory",
                          str(tmp_path), "--cores", "1", "train", "--config", "train={heldout_first: first}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "config train.heldout_first: 'first' is not of type 'integer'" in bad.stdout + bad.stderr
