"""The whole workflow on a small simulated dataset: locally, then through a real SLURM cluster.

The local run goes from simulation to the report; its selections are checked against the
ground truth, a dry run afterwards has nothing to do, and the run records its configuration.
The SLURM run (single-node cluster on localhost, scripts/slurm_local.sh) must submit every job
through sbatch and give byte-identical STAR, score and selection files.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cryosift.shipped import SHIPPED_MODEL

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"

SPEC = {"name": "wf", "box": 56, "pixel_size": 2.5, "mass_kda": 80.0, "n_particles": 400, "snr": 0.5,
        "orientations": "views", "n_views": 4, "shift_sd_A": 3.0, "particles_per_micrograph": 50,
        "junk": {"empty_ice": 0.08, "ice_blob": 0.08, "aggregate": 0.04, "carbon_edge": 0.05}, "seed": 3}
MODEL = "config/model.pt"  # a copy of the shipped model, which a test rewrites
CONFIG = {
    "datasets": "config/datasets.tsv", "seed": 7, "device": "cpu",
    "classify": {"classes": 4, "final_classes": 4, "iterations": 10},
    "selection": {"cutoffs": [3.5, 4.5]},
    "score": {"model": MODEL},
    "abinit": {"final_resolution": 20.0, "minibatch_initial": 100, "minibatch_final": 200,
               "extra": "--iterations 6 4 1 --starts 2 --select-resolution 30"},
}
COMPARED = ("select/*/*/*.star", "select/*/*/selection.json", "score/*/*/scores.csv", "classify/*/*/run_it*_data.star",
            "abinit/*/*/abinit_particles.star", "validate/*/*/validation.json",
            "extract/*/*/particles.star")


#: Steps from ab initio on (their results, logs and benchmark records), left out of the copy that is killed.
LATE_STEPS = ("abinit", "validate", "summary", "report")


def make_project(path: Path) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "wf.yaml").write_text(yaml.safe_dump(SPEC))
    (path / "config" / "datasets.tsv").write_text(
        "dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds\n"
        "wf\tsimulated\tconfig/wf.yaml\t\t\t\t\t2\n")
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    shutil.copyfile(SHIPPED_MODEL, path / MODEL)
    return path


def snakemake_env(extra: dict | None = None) -> dict:
    """This interpreter's programs first on PATH, one OpenMP thread per job."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            **(extra or {})}


def snakemake_command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
            "--configfile", str(workdir / "config" / "config.yaml"), *extra]


def snakemake(workdir: Path, *extra: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with its config/config.yaml (``env``: extra variables)."""
    cmd = ["timeout", "-s", "KILL", str(timeout), *snakemake_command(workdir, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(env), cwd=workdir)


def check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("local"))
    check(snakemake(project, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", timeout=1800))
    return project


def labels_of(star: Path, truth: pd.DataFrame) -> pd.Series:
    """Ground-truth label of each particle in a STAR file (by its image index in the stack)."""
    from cryosift.io import read_particles_star

    names = read_particles_star(star).particles["rlnImageName"].str.split("@").str[0].astype(int) - 1
    return truth.set_index("index").loc[names.to_numpy(), "label"]


def test_local_run_selects_true_particles_and_validates(local_run):
    results = local_run / "results"
    truth = pd.read_csv(results / "simulate" / "wf" / "ground_truth.csv")
    junk_in = (truth["label"] != "true").mean()

    rounds = [json.loads((results / "select" / "wf" / f"round{r}" / "selection.json").read_text()) for r in (1, 2)]
    assert rounds[0]["particles"]["total"] == 400
    assert rounds[1]["particles"]["total"] == rounds[0]["particles"]["kept"] + rounds[0]["particles"]["attractor"]
    pooled = labels_of(results / "pool" / "wf" / "particles.star", truth)
    # Rejection in the loop removes junk: the pooled set is cleaner than the input.
    assert 0 < len(pooled) < 400 and (pooled != "true").mean() < junk_in

    summary = json.loads((results / "summary" / "wf.json").read_text())
    assert summary["rounds"] == 2 or len(summary["rounds"]) == 2
    for cutoff in ("3.5", "4.5"):
        kept = labels_of(results / "extract" / "wf" / f"cutoff{cutoff}" / "particles.star", truth)
        validation = json.loads((results / "validate" / "wf" / f"cutoff{cutoff}" / "validation.json").read_text())
        assert validation["particles_kept"] == len(kept)
        if len(kept):
            assert validation["fsc05_model_A"] is not None and 6.0 <= validation["fsc05_model_A"] < 200.0
            assert validation["qscore_mean"] is not None
        else:
            assert validation["status"] == "no particles kept"
    loose = labels_of(results / "extract" / "wf" / "cutoff4.5" / "particles.star", truth)
    assert len(loose) > 0 and (loose != "true").mean() < junk_in
    # At SNR 0.5 the shipped model keeps the particle classes at 3.5: the model card's target of
    # 95 % of true particles kept, with less junk than came in.
    strict = labels_of(results / "extract" / "wf" / "cutoff3.5" / "particles.star", truth)
    assert (strict == "true").sum() >= 0.95 * (truth["label"] == "true").sum()
    assert (strict != "true").mean() < junk_in

    table = pd.read_csv(results / "report" / "comparison.csv")
    assert sorted(table["cutoff"]) == [3.5, 4.5] and set(table["dataset"]) == {"wf"}
    info = json.loads((results / "run_info.json").read_text())
    assert info["seed"] == 7 and info["packages"]["cryosift"] and info["config"]["classify"]["classes"] == 4

    # Nothing left to do after a finished run.
    out = check(snakemake(local_run, "-n", "--cores", "2"))
    assert "Nothing to be done" in out


def test_changed_scoring_model_rescores(local_run, tmp_path):
    """The checkpoint is an input of scoring. The workflow profile makes Snakemake compare its contents:
    a model rewritten with the same bytes (a reinstall) changes nothing, changed bytes rescore."""
    project = tmp_path / "copy"
    shutil.copytree(local_run, project, symlinks=True)  # file times kept
    dry = ("-n", "--profile", str(REPO / "profiles" / "local"), "--cores", "2")
    model = project / MODEL
    model.write_bytes(model.read_bytes())  # newer, same contents
    assert "Nothing to be done" in check(snakemake(project, *dry))
    # Without comparing contents (no workflow profile), Snakemake would rescore on the newer time alone.
    assert "Nothing to be done" not in check(snakemake(project, "-n", "--cores", "2", "--workflow-profile", "none"))
    with model.open("ab") as f:
        f.write(b"\0")  # other contents: every classification is scored again
    out = check(snakemake(project, *dry))
    counts = re.findall(r"^score\s+(\d+)\s*$", out, flags=re.MULTILINE)
    steps = len(list((project / "results" / "score" / "wf").glob("*/scores.csv")))
    assert steps >= 3 and counts and set(counts) == {str(steps)}, out[-2000:]  # the job table, printed twice


def slurm_available() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        return "SLURM is not installed (scripts/slurm_local.sh install)"
    if os.geteuid() != 0:
        return "the local test cluster runs its daemons as root"
    return None


#: The documented one-time install (README), for the test cluster of scripts/slurm_local.sh: CPU jobs
#: on `main`, GPU jobs on `gpu`, no SLURM accounting (squeue), two cores per node.
SITE_PROFILE = ["install-profile", "slurm", "--partition", "main", "--gpu-partition", "gpu", "--account", "ci",
                "--status-command", "squeue", "--max-threads", "2", "--jobs", "4"]
#: Rules that run where Snakemake runs (localrules): they leave no SLURM log.
LOCAL_RULES = {"select_round", "pool", "select_final", "summarize", "report"}


def install_site_profile(xdg: Path) -> dict:
    """Install the site profile into a temporary XDG_CONFIG_HOME; the environment that finds it.

    The test cluster then checks job states after 1 s instead of the profile's default, and keeps
    the executor's per-job logs, which the test reads to show every job went through sbatch."""
    env = {"XDG_CONFIG_HOME": str(xdg)}
    done = subprocess.run([sys.executable, "-m", "cryosift", *SITE_PROFILE], capture_output=True, text=True,
                          env=snakemake_env(env), timeout=120)
    assert done.returncode == 0, done.stderr
    config = xdg / "snakemake" / "slurm" / "config.yaml"
    assert config.is_file() and (config.parent / "partitions.yaml").is_file()
    with config.open("a") as f:
        f.write("slurm-init-seconds-before-status-checks: 1\nslurm-keep-successful-logs: true\n")
    return env


def queued_jobs() -> list[tuple[str, str, str, str]]:
    """(job id, state, partition, comment) of the jobs SLURM knows; the comment names the rule."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%P|%k"], capture_output=True, text=True, timeout=30).stdout
    return [tuple(line.split("|", 3)) for line in out.splitlines() if line.count("|") == 3]


@pytest.mark.slurm
@pytest.mark.skipif(slurm_available() is not None, reason=str(slurm_available()))
def test_slurm_run_killed_by_scancel_resumes_and_matches_the_local_run(local_run, tmp_path):
    """`snakemake --profile slurm` (the site profile installed as the README says) through a real
    SLURM cluster. SLURM kills one ab initio job (scancel) in the middle: the run fails, the job's
    outputs are not there, nothing before it is touched, and the rerun resumes with the same
    command and ends with the files of the local run."""
    project = make_project(tmp_path / "slurm")
    env = install_site_profile(tmp_path / "xdg")
    script = REPO / "scripts" / "slurm_local.sh"
    up = subprocess.run(["bash", str(script), "up"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    run, seen, victim, output = None, {}, None, tmp_path / "first_run.log"
    try:
        with output.open("w") as sink:
            run = subprocess.Popen(["timeout", "-s", "KILL", "1500", *snakemake_command(project, "--profile", "slurm")],
                                   cwd=project, env=snakemake_env(env), stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        logs, deadline = project / "results" / "logs" / "abinit" / "wf", time.monotonic() + 1200
        while victim is None and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            for job, state, partition, comment in queued_jobs():
                seen[job] = (partition, comment)
                # the executor's comment: rule_<rule>_wildcards_<dataset>_<cutoff>
                started = logs / f"cutoff{comment.rsplit('_', 1)[-1]}.log"
                if comment.startswith("rule_abinit") and state == "RUNNING" and started.is_file() and started.stat().st_size:
                    time.sleep(1.0)
                    subprocess.run(["scancel", job], check=True, timeout=30)
                    victim = comment
                    break
        run.wait(timeout=900)
        first = output.read_text()
        assert victim is not None, "no ab initio job was seen running\n" + first[-3000:]
        assert run.returncode != 0, first[-3000:]
        out = project / "results" / "abinit" / "wf" / f"cutoff{victim.rsplit('_', 1)[-1]}"
        assert not (out / "abinit.mrc").exists() and not (out / "abinit_particles.star").exists()
        assert not (project / "results" / "report" / "comparison.csv").exists()
        earlier = {p: p.stat().st_mtime_ns for p in (project / "results").rglob("*")
                   if p.is_file() and p.parts[len(project.parts) + 1] in ("classify", "score", "select", "pool")}
        assert len(earlier) > 20

        # The same command again: the incomplete job reruns, the rest resumes.
        check(snakemake(project, "--profile", "slurm", env=env, timeout=1200))
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        subprocess.run(["bash", str(script), "down"], capture_output=True, timeout=60)
    assert (out / "abinit.mrc").exists()
    assert not [p for p, t in earlier.items() if p.stat().st_mtime_ns != t]
    assert compare_results(local_run, project) >= 15
    # Every job but the local rules went through sbatch, to the CPU partition (no job asks for a GPU
    # with device: cpu): the executor keeps one log per job under .snakemake/slurm_logs.
    root = project / ".snakemake" / "slurm_logs"
    submitted = {p.relative_to(root).parts[0].removeprefix("rule_") for p in root.rglob("*.log")}
    assert {"simulate", "ingest", "classify", "score", "extract", "abinit", "validate"} <= submitted
    assert not submitted & LOCAL_RULES
    assert seen and {partition for partition, _ in seen.values()} == {"main"}


def compare_results(reference: Path, project: Path) -> int:
    """Assert the STAR/score/selection/validation files of two runs are byte-identical; how many."""
    compared = 0
    for pattern in COMPARED:
        for ours in sorted((reference / "results").glob(pattern)):
            theirs = project / "results" / ours.relative_to(reference / "results")
            assert theirs.exists(), theirs
            assert filecmp.cmp(ours, theirs, shallow=False), ours.relative_to(reference)
            compared += 1
    return compared


def test_run_killed_mid_job_resumes_to_the_same_results(local_run, tmp_path):
    """kill -9 of Snakemake and its jobs during ab initio: the job's outputs are not there to be
    trusted, the earlier steps' results stay as they were, and after `--unlock` the rerun
    (the workflow profile reruns incomplete jobs) completes with the same files as the uninterrupted
    run. The run starts from a copy of the finished one without ab initio and what follows it."""
    project = tmp_path / "killed"
    shutil.copytree(local_run, project, symlinks=True)  # file times kept: only the removed steps rerun
    for step in LATE_STEPS:
        for folder in (project / "results", project / "results" / "logs", project / "results" / "benchmarks"):
            shutil.rmtree(folder / step, ignore_errors=True)
    earlier = {p: p.stat().st_mtime_ns for p in (project / "results").rglob("*") if p.is_file()}
    assert len(earlier) > 50
    run = subprocess.Popen(snakemake_command(project, "--profile", str(REPO / "profiles" / "local")), cwd=project,
                           env=snakemake_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    logs, deadline, victim = project / "results" / "logs" / "abinit" / "wf", time.monotonic() + 900, None
    try:
        while victim is None and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
            started = [p for p in logs.glob("*.log") if p.stat().st_size > 0] if logs.is_dir() else []
            if started:
                victim = started[0].stem  # "cutoff3.5": its ab initio is running
                time.sleep(1.0)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert victim is not None, "the run ended before ab initio started"
    out = project / "results" / "abinit" / "wf" / victim
    assert not (out / "abinit.mrc").exists() and not (out / "abinit_particles.star").exists()
    assert not (project / "results" / "report" / "comparison.csv").exists()

    locked = snakemake(project, "--profile", str(REPO / "profiles" / "local"))
    assert locked.returncode != 0 and "unlock" in (locked.stdout + locked.stderr)
    check(snakemake(project, "--unlock"))
    check(snakemake(project, "--profile", str(REPO / "profiles" / "local")))
    assert (out / "abinit.mrc").exists()
    assert compare_results(local_run, project) >= 15
    # Nothing before ab initio ran again: the killed run and the rerun left those files alone.
    changed = [p for p, t in earlier.items() if p.stat().st_mtime_ns != t and "run_info" not in p.name]
    assert not changed, changed[:5]
