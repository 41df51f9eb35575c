"""With CI=true a skipped RELION or SLURM test fails the run (tests/conftest.py); elsewhere it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest

@pytest.mark.relion
@pytest.mark.skipif(True, reason="RELION binaries not on PATH")
def test_needs_relion():
    pass

@pytest.mark.slurm
def test_needs_slurm():
    pytest.skip("SLURM is not installed")

@pytest.mark.skipif(True, reason="a GPU is present")
def test_other_skip():
    pass
'''


def run_sample(tmp_path, ci: str | None):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout


def test_ci_turns_relion_and_slurm_skips_into_failures(tmp_path):
    rc, out = run_sample(tmp_path, "true")
    # a skipif skips in setup: pytest counts that failure as an error, a skip in the test as failed
    assert rc == 1 and "1 failed, 1 skipped" in out and "1 error" in out, out
    assert "skipped in CI, where relion must run: RELION binaries not on PATH" in out
    assert "skipped in CI, where slurm must run" in out


def test_outside_ci_they_skip(tmp_path):
    rc, out = run_sample(tmp_path, None)
    assert rc == 0 and "3 skipped" in out, out
