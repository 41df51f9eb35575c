"""Builtin 2D classification against RELION 3.1 on the same simulated particles.

Simulates particles with a few distinct views plus junk (ground truth known), writes them
as freshly extracted particles (no poses), normalises them with relion_preprocess, and
classifies the same stack with ``relion_refine --j THREADS`` and with the builtin engine at
the same sampling (psi 12 deg and offsets 2 px coarse, oversampling 1, so 6 deg and 1 px
fine; range 5 px; T = 2). Prints wall time and, against the ground truth, class purity,
in-plane angle error and how junk gathers, with builtin/RELION ratios in one table.

Examples::

    python benchmarks/class2d_vs_relion.py --small                  # ~1,000 particles, minutes
    python benchmarks/class2d_vs_relion.py                          # 5,000 x 64 px, K=20, 20 it
    python benchmarks/class2d_vs_relion.py --engines builtin --device cuda --particles 100000 --classes 50
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads spin while they wait; on shared cores that makes element-wise
# steps many times slower. Passive waiting costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.engines.builtin import classify2d
from cryosift.io import read_particles_star, write_particles_star
from cryosift.simulate import SimulationSpec, simulate_dataset

POSE_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst")
SIZES = {
    "full": dict(particles=5000, box=64, classes=20, iterations=20, views=10, mass=250.0),
    "small": dict(particles=1000, box=40, classes=8, iterations=15, views=5, mass=100.0),
}


def simulate(out: Path, n: int, box: int, views: int, mass: float, snr: float, seed: int,
             device: str | None) -> tuple[Path, pd.DataFrame]:
    """Simulated views + junk, written as extracted particles; returns the STAR and the ground truth."""
    spec = SimulationSpec(name="class2d_bench", orientations="views", n_views=views, box=box, pixel_size=3.0,
                          n_particles=n, snr=snr, mass_kda=mass, shift_sd_A=4.0, seed=seed,
                          junk={"empty_ice": 0.04, "ice_blob": 0.04, "aggregate": 0.04, "off_centre": 0.03})
    ds = simulate_dataset(spec, out, device=device)
    pset = read_particles_star(ds.particles_star)
    pset.particles = pset.particles.drop(columns=[c for c in POSE_LABELS if c in pset.particles])
    star = out / "extracted.star"
    write_particles_star(star, pset)
    return star, ds.ground_truth


def normalise_for_relion(star: Path, box: int, diameter_px: float) -> Path:
    """relion_preprocess --norm on the stack (RELION expects normalised particles); same STAR otherwise."""
    folder = star.parent
    subprocess.run(["relion_preprocess", "--operate_on", "particles.mrcs", "--operate_out", "particles_norm.mrcs",
                    "--norm", "--bg_radius", str(int(min(box // 2 - 1, diameter_px / 2)))],
                   cwd=folder, check=True, capture_output=True)
    pset = read_particles_star(star)
    pset.particles["rlnImageName"] = pset.particles["rlnImageName"].str.replace("@particles.mrcs", "@particles_norm.mrcs")
    out = folder / "extracted_norm.star"
    write_particles_star(out, pset)
    return out


def run_relion(star: Path, job: Path, classes: int, iterations: int, diameter: float, threads: int) -> float:
    """relion_refine 2D classification, as the RELION 3.1 GUI runs it; returns wall seconds."""
    job.mkdir(parents=True, exist_ok=True)
    cmd = ["relion_refine", "--o", str(job.resolve() / "run"), "--i", star.name, "--dont_combine_weights_via_disc",
           "--preread_images", "--pool", "3", "--pad", "2", "--ctf", "--iter", str(iterations), "--tau2_fudge", "2",
           "--particle_diameter", str(diameter), "--K", str(classes), "--flatten_solvent", "--zero_mask",
           "--oversampling", "1", "--psi_step", "12", "--offset_range", "5", "--offset_step", "2", "--norm", "--scale",
           "--j", str(threads), "--random_seed", "1"]
    t0 = time.perf_counter()
    with open(job / "run.log", "w") as log:
        subprocess.run(cmd, cwd=star.parent, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def run_builtin(star: Path, job: Path, classes: int, iterations: int, diameter: float, threads: int,
                device: str | None) -> float:
    t0 = time.perf_counter()
    classify2d(star, job, classes=classes, iterations=iterations, particle_diameter=diameter, tau2_fudge=2.0,
               psi_step=12.0, offset_range=5.0, offset_step=2.0, oversampling=1, seed=1, threads=threads, device=device)
    return time.perf_counter() - t0


def score(data_star: Path, truth: pd.DataFrame) -> dict:
    """Purity, in-plane angle error and junk gathering of a data.star against the ground truth."""
    parts = read_particles_star(data_star).particles
    classes = parts["rlnClassNumber"].to_numpy()
    true = (truth["label"] == "true").to_numpy()
    table = pd.crosstab(classes[true], truth["view"].to_numpy()[true])
    purity = float(table.max(axis=1).sum() / table.to_numpy().sum())
    errors = []
    psi = parts["rlnAnglePsi"].to_numpy()
    for k in np.unique(classes[true]):
        sel = true & (classes == k)
        d = np.exp(1j * np.radians(psi[sel] - truth["psi"].to_numpy()[sel]))
        errors.append(np.degrees(np.abs(np.angle(d * np.conj(d.mean() / max(abs(d.mean()), 1e-12))))))
    err = np.concatenate(errors)
    junk = pd.Series(classes[~true])
    junk_classes = [k for k in np.unique(classes) if (classes[~true] == k).sum() > 0.5 * (classes == k).sum()]
    return {
        "purity": purity,
        "psi_error_median_deg": float(np.median(err)),
        "psi_within_10deg": float(np.mean(err < 10)),
        "junk_in_junk_classes": float(junk.isin(junk_classes).mean()) if len(junk) else float("nan"),
        "populated_classes": int((pd.Series(classes).value_counts() >= 0.01 * len(classes)).sum()),
    }


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} / {five:.1f} (1 / 5 min, {os.cpu_count()} cores)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a run of a few minutes instead of the full size")
    parser.add_argument("--particles", type=int)
    parser.add_argument("--box", type=int)
    parser.add_argument("--classes", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--views", type=int)
    parser.add_argument("--mass", type=float, help="kDa of the simulated particle")
    parser.add_argument("--snr", type=float, default=0.1, help="signal-to-noise ratio of the true particles")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", help="builtin engine device (default: GPU if present)")
    parser.add_argument("--engines", default="builtin,relion", help="comma list: builtin, relion")
    parser.add_argument("--out", default="benchmarks/class2d_vs_relion", help="work folder (re-created)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    size = dict(SIZES["small" if args.small else "full"])
    for key in size:
        if getattr(args, key, None):
            size[key] = getattr(args, key)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "relion" in engines and shutil.which("relion_refine") is None:
        sys.exit("relion_refine not found: install RELION or pass --engines builtin")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    load_before = load_average()
    t0 = time.perf_counter()
    star, truth = simulate(out / "data", size["particles"], size["box"], size["views"], size["mass"], args.snr,
                           args.seed, args.device)
    print(f"simulated {size['particles']} particles ({size['views']} views, {int((truth.label != 'true').sum())} junk), "
          f"{size['box']} px in {time.perf_counter() - t0:.0f} s; load average {load_before}")
    diameter = 0.9 * size["box"] * 3.0
    if "relion" in engines:
        star = normalise_for_relion(star, size["box"], diameter / 3.0)
    results = {}
    for engine in engines:
        job = out / engine
        if engine == "relion":
            wall = run_relion(star, job, size["classes"], size["iterations"], diameter, args.threads)
            data = job / f"run_it{size['iterations']:03d}_data.star"
        else:
            wall = run_builtin(star, job, size["classes"], size["iterations"], diameter, args.threads, args.device)
            data = job / f"run_it{size['iterations']:03d}_data.star"
        results[engine] = {"wall_s": wall, **score(data, truth), "load_after": load_average()}
        print(f"{engine}: {wall:.1f} s, " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in results[engine].items() if k != "wall_s"))
    rows = [f"{'':28s}" + "".join(f"{e:>12s}" for e in engines) + ("   builtin/relion" if len(engines) == 2 else "")]
    for key in ("wall_s", "purity", "psi_error_median_deg", "psi_within_10deg", "junk_in_junk_classes",
                "populated_classes"):
        values = [results[e][key] for e in engines]
        line = f"{key:28s}" + "".join(f"{v:12.3f}" for v in values)
        if len(engines) == 2 and values[1]:
            line += f"   {values[0] / values[1]:.3f}"
        rows.append(line)
    print(f"\n{size['particles']} particles, {size['box']} px, K={size['classes']}, {size['iterations']} iterations, "
          f"{args.threads} threads")
    print("\n".join(rows))
    if "relion" in results and "builtin" in results:
        print(f"\nbuiltin is {results['relion']['wall_s'] / results['builtin']['wall_s']:.1f}x faster than RELION; "
              f"purity {results['builtin']['purity']:.3f} vs {results['relion']['purity']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": size, "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
