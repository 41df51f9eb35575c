"""The SLURM site profile: `cryosift install-profile slurm` writes it where Snakemake finds
`--profile slurm`; with a GPU partition the SLURM executor sends GPU jobs there and no others."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cryosift.cli import main
from cryosift.errors import InputError
from cryosift.pipeline.profiles import SlurmSite, slurm_profile

REPO = Path(__file__).resolve().parents[1]


def install(tmp_path, monkeypatch, *flags):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return main(["install-profile", "slurm", *flags])


def test_install_writes_where_snakemake_finds_the_profile(tmp_path, monkeypatch, capsys):
    assert install(tmp_path, monkeypatch, "--partition", "cpu", "--account", "lab1", "--gpu-partition", "gpu",
                   "--max-threads", "32") == 0
    folder = tmp_path / "xdg" / "snakemake" / "slurm"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["executor"] == "slurm" and config["max-threads"] == 32
    assert config["default-resources"]["slurm_account"] == "lab1"
    # partitions come from partitions.yaml: a default partition would stop the executor choosing
    assert "slurm_partition" not in config["default-resources"]
    assert config["slurm-partition-config"] == "partitions.yaml"
    assert yaml.safe_load((folder / "partitions.yaml").read_text())["partitions"] == {
        "cpu": {"max_gpu": 0}, "gpu": {"max_gpu": 8}}
    assert "snakemake --profile slurm" in capsys.readouterr().out
    # Snakemake's own lookup of `--profile slurm` (from any folder without a ./slurm).
    found = subprocess.run([sys.executable, "-c", "from snakemake.cli import get_profile_dir; "
                            "print(get_profile_dir('slurm')[1])"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}, timeout=120)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == folder / "config.yaml"


def test_an_existing_profile_is_kept_unless_forced(tmp_path, monkeypatch, capsys):
    assert install(tmp_path, monkeypatch, "--partition", "cpu", "--gpu-partition", "gpu") == 0
    folder = tmp_path / "xdg" / "snakemake" / "slurm"
    assert install(tmp_path, monkeypatch, "--partition", "other") == 2
    assert "a profile is already there; --force replaces it" in capsys.readouterr().err
    assert yaml.safe_load((folder / "partitions.yaml").read_text())
    assert install(tmp_path, monkeypatch, "--partition", "other", "--force") == 0
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["default-resources"]["slurm_partition"] == "other" and not (folder / "partitions.yaml").exists()
    assert install(tmp_path, monkeypatch, "--partition", "cpu", "--name", "cryosift-slurm") == 0
    assert (tmp_path / "xdg" / "snakemake" / "cryosift-slurm" / "config.yaml").is_file()


def test_without_accounting_job_states_come_from_squeue():
    config, partitions = slurm_profile(SlurmSite(partition="main", status_command="squeue"))
    assert config["slurm-status-command"] == "squeue" and partitions is None
    assert "slurm-status-command" not in slurm_profile(SlurmSite(partition="main"))[0]
    with pytest.raises(InputError, match="partition 'a b': one SLURM name"):
        slurm_profile(SlurmSite(partition="a b"))


def test_the_executor_sends_gpu_jobs_to_the_gpu_partition(tmp_path, monkeypatch):
    """The installed partitions.yaml read by the SLURM executor's own partition selection."""
    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

    assert install(tmp_path, monkeypatch, "--partition", "cpu", "--gpu-partition", "gpu") == 0
    partitions = read_partition_file(tmp_path / "xdg" / "snakemake" / "slurm" / "partitions.yaml")
    log = SimpleNamespace(debug=lambda *a: None, info=lambda *a: None, warning=lambda *a: None)

    def job(**resources):
        return SimpleNamespace(name="job", threads=4, resources={"mem_mb": 16000, "runtime": 240, **resources})

    assert get_best_partition(partitions, job(gpu=1), log) == "gpu"
    assert get_best_partition(partitions, job(gpu=0), log) == "cpu"
    assert get_best_partition(partitions, job(), log) == "cpu"
    assert get_best_partition(partitions, job(gpu=0, tasks=3, mpi="mpirun"), log) == "cpu"
