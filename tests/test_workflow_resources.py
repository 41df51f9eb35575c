"""Resources that match the work, read from the dry-run plan: a GPU only where the work uses one,
RELION's MPI ranks as SLURM tasks, threads from the workflow profile reaching the commands,
light and CryoSPARC-only rules local."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.workflow_plan import dry_run

SHEET = "dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds\ndemo\tsimulated\tdemo\t\t\t\t\t2\n"
#: set-threads of workflow/profiles/default/config.yaml, seen with enough cores.
PROFILE_THREADS = {"simulate": 4, "classify": 8, "score": 2, "abinit": 8, "validate": 4}
LOCAL = {"all", "pool", "select_round", "select_final", "summarize", "report"}


def plan(tmp_path, **config):
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "datasets.tsv").write_text(SHEET)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"datasets": "config/datasets.tsv", **config}))
    jobs, _ = dry_run(tmp_path, "--cores", "16")
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job.rule, []).append(job)
    return by_rule


def gpus(job) -> int:
    return int(job.resources.get("gpu") or 0)


def test_builtin_on_cpu_asks_for_no_gpu(tmp_path):
    jobs = plan(tmp_path, device="cpu")
    assert all(gpus(j) == 0 for js in jobs.values() for j in js)
    for rule, threads in PROFILE_THREADS.items():
        assert {j.threads for j in jobs[rule]} == {threads}, rule
        assert all(f"-j {threads} " in j.shell for j in jobs[rule]), rule  # {threads} reaches the command
    assert {j.resources["mem_mb"] for j in jobs["classify"] + jobs["abinit"]} == {"16000"}
    assert all(j.resources.get("tasks") == "1" and not j.resources.get("mpi") for j in jobs["classify"])


def test_builtin_on_cuda_asks_for_gpus_where_they_are_used(tmp_path):
    jobs = plan(tmp_path, device="cuda")
    assert {gpus(j) for j in jobs["classify"] + jobs["abinit"]} == {1}
    # Scoring runs on the CPU whatever the device: well under a second per classification.
    assert all(gpus(j) == 0 and "--device cpu" in j.shell for j in jobs["score"])
    others = [j for rule, js in jobs.items() if rule not in ("classify", "abinit") for j in js]
    assert others and all(gpus(j) == 0 for j in others)


def test_relion_on_cpu_with_mpi_ranks_as_tasks(tmp_path):
    jobs = plan(tmp_path, engine="relion", device="cuda", relion={"mpi": 3})
    assert "abinit" not in jobs  # RELION's initial model has no half maps: the rule that declares none runs it
    relion_abinit = jobs["abinit_without_half_maps"]
    assert {j.threads for j in relion_abinit} == {8} and {j.resources["mem_mb"] for j in relion_abinit} == {"16000"}
    for job in jobs["classify"] + jobs["abinit_without_half_maps"]:
        assert gpus(job) == 0 and "--relion-gpu" not in job.shell  # RELION's GPU use is relion.gpu's
        assert job.resources["tasks"] == "3" and job.resources["mpi"] == "mpirun"
        assert "--engine relion --mpi 3" in job.shell


def test_relion_with_gpu(tmp_path):
    jobs = plan(tmp_path, engine="relion", device="cpu", relion={"gpu": True})
    for job in jobs["classify"] + jobs["abinit_without_half_maps"]:
        assert gpus(job) == 1 and "--mpi 1 --relion-gpu" in job.shell
        assert job.resources["tasks"] == "1" and not job.resources.get("mpi")


LOCAL_RULES = """
import sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]), workdir=Path("."),
                      config_settings=ConfigSettings(configfiles=[Path("config/config.yaml")]))
    workflow = wf._workflow  # the parsed workflow: its localrules run where Snakemake runs
    print(" ".join(sorted(r.name for r in workflow.rules if r.name in workflow._localrules)))
"""


def test_light_and_cryosparc_rules_are_local(tmp_path):
    """A dry run does not say which jobs are local; the parsed workflow does (the SLURM run test
    checks the same on a cluster: local rules leave no SLURM log)."""
    import subprocess
    import sys

    from tests.workflow_plan import SNAKEFILE

    plan(tmp_path)  # writes the project
    proc = subprocess.run([sys.executable, "-c", LOCAL_RULES, str(SNAKEFILE)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local = set(proc.stdout.split())
    assert LOCAL <= local and "train" in local
    assert {r for r in local if r.startswith("cryosparc_")} == {
        "cryosparc_settings", "cryosparc_ingest", "cryosparc_ingest_classified", "cryosparc_classify",
        "cryosparc_scores", "cryosparc_select_round", "cryosparc_select_final", "cryosparc_reconstruct"}
    heavy = {"simulate", "ingest", "classify", "score", "extract", "abinit", "abinit_without_half_maps", "validate",
             "train_model"}
    assert not heavy & local


@pytest.mark.relion
@pytest.mark.skipif(shutil.which("relion_refine") is None, reason="RELION binaries (relion_refine) not on PATH")
def test_relion_engine_passes_gpu_to_relion_refine(tmp_path, monkeypatch):
    import cryosift.engines.relion as relion_engine
    from cryosift.commands._engine_options import engine_options
    from tests.conftest import make_particle_set

    class Ran(Exception):
        pass

    commands = []

    def record(cmd, job, what):
        commands.append(cmd)
        raise Ran

    monkeypatch.setattr(relion_engine, "run_relion", record)
    from argparse import Namespace

    options = engine_options(Namespace(engine="relion", mpi=1, relion_prefix="", relion_gpu=True))
    assert options["gpu"] is True
    particles = make_particle_set(tmp_path, n=8, box=16)
    for gpu in (True, False):
        engine = relion_engine.RelionEngine(threads=2, gpu=gpu)
        for step in (engine.classify2d, engine.abinit):
            with pytest.raises(Ran):
                step(particles, tmp_path / f"{step.__name__}{gpu}", particle_diameter=30.0)
    with_gpu, without = commands[:2], commands[2:]
    for cmd in with_gpu:
        assert cmd[cmd.index("--gpu") + 1] == "" and cmd[cmd.index("--j") + 1] == "2"
    assert all("--gpu" not in cmd for cmd in without)
