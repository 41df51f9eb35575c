"""Builtin ab initio against RELION 3.1's SGD initial model on the same simulated particles.

Simulates a pseudo-protein (no junk, uniform views, CTF, SNR 0.1 by default), strips the
poses, and builds a de novo map with the builtin engine (:func:`cryosift.reconstruct.abinit`)
and with ``relion_refine --sgd --denovo_3dref --j THREADS`` (normalised copy of the stack,
as RELION expects). Each map is superposed on the true map (both hands tried) and compared
by FSC; prints wall time and FSC 0.5 / 0.143 resolutions with the builtin/RELION ratio.

Examples::

    python benchmarks/abinit_vs_relion.py --small              # 1,000 x 40 px, builtin only in ~2 min
    python benchmarks/abinit_vs_relion.py                      # 3,000 x 64 px at 3 Å/px, both engines
    python benchmarks/abinit_vs_relion.py --engines builtin --device cuda --particles 20000
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads hurt on shared cores

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cryosift.device import set_threads
from cryosift.engines.relion import RelionEngine
from cryosift.io import read_map, read_particles_star, write_particles_star
from cryosift.reconstruct import abinit
from cryosift.simulate import SimulationSpec, simulate_dataset
from cryosift.validate.align import align_maps
from cryosift.validate.fsc import fsc_curve, resolution_at
from cryosift.validate.masks import soft_sphere_mask

POSE_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst")
SIZES = {
    "full": dict(particles=3000, box=64, mass=250.0),
    "small": dict(particles=1000, box=40, mass=100.0),
}


def simulate(out: Path, n: int, box: int, mass: float, snr: float, seed: int, device) -> tuple[Path, Path]:
    """True particles only, poses removed; returns the STAR and the true map."""
    spec = SimulationSpec(name="abinit_bench", box=box, pixel_size=3.0, n_particles=n, snr=snr, mass_kda=mass,
                          shift_sd_A=3.0, seed=seed, junk={})
    ds = simulate_dataset(spec, out, device=device)
    pset = read_particles_star(ds.particles_star)
    pset.particles = pset.particles.drop(columns=[c for c in POSE_LABELS if c in pset.particles])
    star = out / "extracted.star"
    write_particles_star(star, pset)
    return star, Path(ds.map_mrc)


def normalise_for_relion(star: Path, box: int) -> Path:
    """relion_preprocess --norm on the stack; the same STAR pointing at the normalised copy."""
    folder = star.parent
    subprocess.run(["relion_preprocess", "--operate_on", "particles.mrcs", "--operate_out", "particles_norm.mrcs",
                    "--norm", "--bg_radius", str(int(box * 0.45))], cwd=folder, check=True, capture_output=True)
    pset = read_particles_star(star)
    pset.particles["rlnImageName"] = pset.particles["rlnImageName"].str.replace("@particles.mrcs", "@particles_norm.mrcs")
    out = folder / "extracted_norm.star"
    write_particles_star(out, pset)
    return out


def compare(truth: np.ndarray, volume: np.ndarray, pixel_size: float) -> dict:
    """Superpose ``volume`` on the truth (either hand) and measure the masked FSC."""
    aligned = align_maps(truth, volume, pixel_size, both_hands=True)
    mask = soft_sphere_mask(truth.shape[0])
    curve = fsc_curve(truth, aligned.aligned, pixel_size, mask=mask)
    return {"fsc05_A": resolution_at(curve, 0.5), "fsc0143_A": resolution_at(curve, 0.143),
            "mirrored": bool(aligned.flipped)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 particles of 40 px instead of the full size")
    parser.add_argument("--particles", type=int)
    parser.add_argument("--box", type=int)
    parser.add_argument("--mass", type=float, help="kDa of the simulated particle")
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", help="builtin engine device (default: GPU if present)")
    parser.add_argument("--engines", default="builtin,relion", help="comma list: builtin, relion")
    parser.add_argument("--sgd-iterations", type=int, nargs=3, default=(20, 50, 20), metavar=("INI", "MID", "FIN"),
                        help="RELION SGD iterations (default: %(default)s, 90 in all)")
    parser.add_argument("--out", default="benchmarks/abinit_vs_relion", help="work folder (re-created)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    size = dict(SIZES["small" if args.small else "full"])
    size.update({k: v for k, v in (("particles", args.particles), ("box", args.box), ("mass", args.mass)) if v})
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "relion" in engines and shutil.which("relion_refine") is None:
        sys.exit("relion_refine not found: install RELION or pass --engines builtin")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    set_threads(args.threads)
    star, truth_path = simulate(out / "data", size["particles"], size["box"], size["mass"], args.snr, args.seed,
                                args.device)
    truth, pixel_size = read_map(truth_path)
    print(f"simulated {size['particles']} particles, {size['box']} px at {pixel_size} Å/px, {size['mass']:.0f} kDa, "
          f"SNR {args.snr}")

    results = {}
    for engine in engines:
        t0 = time.perf_counter()
        if engine == "builtin":
            result = abinit(read_particles_star(star), out / "builtin", seed=args.seed, final_resolution=2.5 * pixel_size,
                            device=args.device)
            volume = result.volume
        else:
            norm = normalise_for_relion(star, size["box"])
            ini, mid, fin = args.sgd_iterations
            res = RelionEngine(threads=args.threads).abinit(
                norm, out / "relion", particle_diameter=0.85 * size["box"] * pixel_size, sgd_ini_iter=ini,
                sgd_inbetween_iter=mid, sgd_fin_iter=fin, seed=1)
            volume = read_map(res.map)[0]
        wall = time.perf_counter() - t0
        results[engine] = {"wall_s": wall, **compare(truth, volume, pixel_size)}
        r = results[engine]
        print(f"{engine}: {wall:.0f} s, FSC 0.5 {r['fsc05_A']:.1f} Å, FSC 0.143 {r['fsc0143_A']:.1f} Å, "
              f"mirrored {r['mirrored']}", flush=True)
    if "builtin" in results and "relion" in results:
        b, r = results["builtin"], results["relion"]
        print(f"\nbuiltin is {r['wall_s'] / b['wall_s']:.1f}x faster than RELION SGD; "
              f"FSC 0.5 {b['fsc05_A']:.1f} Å vs {r['fsc05_A']:.1f} Å")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": size, "snr": args.snr, "results": results}, indent=1))


if __name__ == "__main__":
    main()
