"""How long Snakemake takes to find nothing to do after a finished run of many datasets.

Runs the whole workflow once on N small simulated datasets (one row each in the sheet, every
dataset its own seed), then times a dry run (`snakemake -n`) and a real no-op rerun
(`snakemake --cores 2`) of the finished project, and the same for a one-dataset project made
alongside as the peer, so the per-dataset cost of the DAG shows as a ratio.

Examples::

    python benchmarks/noop_rerun.py                    # 10 datasets (the first run takes ~15 min on 2 cores)
    python benchmarks/noop_rerun.py --datasets 3 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SPEC = {"box": 56, "pixel_size": 2.5, "mass_kda": 80.0, "n_particles": 300, "snr": 0.5, "orientations": "views",
        "n_views": 4, "shift_sd_A": 3.0, "particles_per_micrograph": 50,
        "junk": {"empty_ice": 0.08, "ice_blob": 0.08, "aggregate": 0.04}}
CONFIG = {
    "datasets": "config/datasets.tsv", "seed": 11, "device": "cpu",
    "classify": {"classes": 4, "final_classes": 4, "iterations": 8},
    "abinit": {"final_resolution": 20.0, "minibatch_initial": 60, "minibatch_final": 120,
               "extra": "--iterations 3 2 1 --starts 1"},
    "validate": {"reslog": False},
}


def make_project(path: Path, n: int) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    (path / "config").mkdir(parents=True)
    rows = ["dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds"]
    for i in range(n):
        (path / "config" / f"ds{i}.yaml").write_text(yaml.safe_dump({**SPEC, "name": f"ds{i}", "seed": 100 + i}))
        rows.append(f"ds{i}\tsimulated\tconfig/ds{i}.yaml\t\t\t\t\t2")
    (path / "config" / "datasets.tsv").write_text("\n".join(rows) + "\n")
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return path


def snakemake(project: Path, *extra: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
           str(project), "--configfile", str(project / "config" / "config.yaml"), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=project)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(extra)} failed in {project}:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def time_noop(project: Path, repeats: int) -> dict:
    dry, real = [], []
    for _ in range(repeats):
        wall, out = snakemake(project, "-n", "--cores", "2")
        assert "Nothing to be done" in out, out[-2000:]
        dry.append(wall)
        wall, out = snakemake(project, "--cores", "2")
        assert "Nothing to be done" in out, out[-2000:]
        real.append(wall)
    return {"dry_s": statistics.median(dry), "rerun_s": statistics.median(real)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed no-op runs (median reported)")
    parser.add_argument("--out", default="benchmarks/noop_rerun", help="work folder (re-created)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    projects = {1: make_project(out / "one", 1), args.datasets: make_project(out / "many", args.datasets)}
    for n, project in projects.items():
        wall, _ = snakemake(project, "--cores", "2")
        jobs = sum(1 for _ in (project / "results" / "benchmarks").rglob("*.tsv"))
        print(f"{n} dataset(s): first run {wall:.0f} s, {jobs} jobs", flush=True)
    figures = {n: time_noop(p, args.repeats) for n, p in projects.items()}
    for n, f in figures.items():
        print(f"{n} dataset(s): no-op dry run {f['dry_s']:.2f} s, no-op rerun {f['rerun_s']:.2f} s (median of "
              f"{args.repeats})")
    many, one = figures[args.datasets], figures[1]
    print(f"\n{args.datasets} datasets vs 1: dry run {many['dry_s'] / one['dry_s']:.2f}x, "
          f"rerun {many['rerun_s'] / one['rerun_s']:.2f}x")


if __name__ == "__main__":
    main()
