"""The rules' conda environment (workflow/envs/cryosift.yaml) and the packaging extras.

No conda here: the pip part of the environment, the part that installs cryosift, is resolved in
a scratch venv the way conda hands it to pip (a requirements file, ${CRYOSIFT_SOURCE} set as
workflow/Snakefile sets it), without downloading torch (the local wheel, no dependencies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / "workflow" / "envs" / "cryosift.yaml"


def pip_part(env: dict) -> list[str]:
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return dep["pip"]
    raise AssertionError("no pip part")


def test_env_installs_cryosift_from_the_workflow_source(tmp_path):
    env = yaml.safe_load(ENV.read_text())
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    requirements = pip_part(env)
    assert not any(".." in r for r in requirements)  # nothing relative to Snakemake's copy of the file
    # Every rule uses this environment.
    rules = [p for p in (REPO / "workflow" / "rules").glob("*.smk")]
    assert all('"../envs/cryosift.yaml"' in p.read_text() for p in rules if "shell:" in p.read_text())

    (tmp_path / "condaenv.requirements.txt").write_text("\n".join(requirements) + "\n")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=120)
    # A checkout elsewhere than where pip runs: the path comes from the variable alone.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(tmp_path / "venv" / "bin" / "python"),
                           "install", "--dry-run", "--no-deps", "-c", str(REPO / "constraints.txt"),
                           "-r", "condaenv.requirements.txt", "--report", "report.json", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CRYOSIFT_SOURCE": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    found = {i["metadata"]["name"]: i for i in report["install"]}
    assert set(found) == {"torch", "cryosift"}
    assert found["torch"]["metadata"]["version"].startswith("2.13.0")
    assert found["cryosift"]["download_info"]["url"] == REPO.as_uri()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert found["cryosift"]["metadata"]["version"] == project["version"]


def test_snakefile_points_the_env_at_its_checkout():
    text = (REPO / "workflow" / "Snakefile").read_text()
    assert 'os.environ.setdefault("CRYOSIFT_SOURCE", os.path.dirname(workflow.basedir))' in text
    assert "${CRYOSIFT_SOURCE}" in " ".join(pip_part(yaml.safe_load(ENV.read_text())))


def test_cryosparc_extras_match_a_server_major_minor():
    """cryosparc-tools talks only to a server of its own major.minor: each extra pins one."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, server in (("cryosparc4", "4.7"), ("cryosparc5", "5.0")):
        (req,) = [Requirement(r) for r in extras[extra]]
        assert req.name == "cryosparc-tools"
        allowed = [v for v in (f"{server}.0", f"{server}.9") if Version(v) in req.specifier]
        others = [v for v in ("4.6.1", "4.8.0", "5.1.0", "6.0.0") if not v.startswith(server)
                  and Version(v) in req.specifier]
        assert allowed == [f"{server}.0", f"{server}.9"] and others == [], extra
