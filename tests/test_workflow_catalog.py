"""Workflow-catalog conformance: licence, catalog settings, snakefmt-clean rules, the .test
configuration (the demo's) planning the whole DAG."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from tests.workflow_plan import dry_run, job_counts

REPO = Path(__file__).resolve().parents[1]


def test_license_is_the_one_pyproject_names():
    text = (REPO / "LICENSE").read_text()
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert text.startswith("MIT License") and "The cryosift authors" in text


def test_catalog_settings():
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert usage["mandatory-flags"]["flags"] == "--profile slurm"
    assert "cryosift install-profile slurm" in usage["mandatory-flags"]["desc"]
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True


def test_rules_are_snakefmt_clean():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    assert snakefmt, "snakefmt is a test dependency (pyproject [test])"
    proc = subprocess.run([snakefmt, "--check", "workflow/"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_test_config_is_the_demo_and_plans_the_whole_dag():
    test_config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for block in ("classify", "abinit"):
        assert test_config[block] == demo[block], block
    assert test_config["seed"] == demo["seed"]
    jobs, _ = dry_run(REPO / ".test", "--cores", "2")
    counts = job_counts(jobs)
    rounds, cutoffs = 5, 3  # the demo's 64 px box: five rounds; cutoffs 2.5, 3.5, 4.5
    assert counts["simulate"] == 1 and counts["classify"] == rounds + 1 and counts["score"] == rounds + 1
    assert counts["abinit"] == counts["validate"] == cutoffs and counts["report"] == 1
