"""Time cs -> STAR and STAR -> cs conversion of a large particle set.

Usage: python benchmarks/convert_speed.py [--n 1000000] [--workdir DIR]
Prints wall seconds per step and particles per second; the target is < 60 s for 1M cs -> STAR on 2 cores.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from cryosparc.dataset import Dataset

from cryosift.io.convert import cs_to_star, star_to_cs


def make_dataset(n: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    ds = Dataset.allocate(n, [
        ("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)), ("blob/psize_A", "f4"),
        ("ctf/exp_group_id", "u4"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"),
        ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"), ("ctf/phase_shift_rad", "f4"),
        ("alignments3D/pose", "f4", (3,)), ("alignments3D/shift", "f4", (2,)), ("alignments3D/psize_A", "f4"),
        ("alignments3D/split", "u4"), ("alignments2D/class", "u4"),
    ])
    per_stack = 500
    ds["blob/path"] = np.array([f"J12/extract/{i // per_stack:06d}_particles.mrc" for i in range(n)], dtype=object)
    ds["blob/idx"] = np.arange(n) % per_stack
    ds["blob/shape"] = 256
    ds["blob/psize_A"] = 1.06
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = 300, 2.7, 0.1
    ds["ctf/df1_A"] = rng.uniform(5000, 30000, n)
    ds["ctf/df2_A"] = ds["ctf/df1_A"] - rng.uniform(0, 800, n)
    ds["ctf/df_angle_rad"] = rng.uniform(-np.pi, np.pi, n)
    v = rng.normal(size=(n, 3)).astype(np.float32)
    ds["alignments3D/pose"] = v / np.linalg.norm(v, axis=1)[:, None] * rng.uniform(0, np.pi, (n, 1))
    ds["alignments3D/shift"] = rng.normal(scale=3, size=(n, 2))
    ds["alignments3D/psize_A"] = 1.06
    ds["alignments3D/split"] = rng.integers(0, 2, n)
    ds["alignments2D/class"] = rng.integers(0, 50, n)
    return ds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        make_dataset(args.n).save(tmp / "particles.cs")
        t0 = time.perf_counter()
        cs_to_star(tmp / "particles.cs", tmp / "particles.star")
        t1 = time.perf_counter()
        star_to_cs(tmp / "particles.star", tmp / "back.cs")
        t2 = time.perf_counter()
        size = (tmp / "particles.star").stat().st_size / 1e6
    print(f"particles            {args.n}")
    print(f"cs -> star           {t1 - t0:.1f} s  ({args.n / (t1 - t0):,.0f} particles/s, STAR {size:.0f} MB)")
    print(f"star -> cs           {t2 - t1:.1f} s  ({args.n / (t2 - t1):,.0f} particles/s)")


if __name__ == "__main__":
    main()
