"""Validation speed: Q-scores of a ~10k-atom model and superposition of two 128^3 maps.

Usage::

    python benchmarks/validate_speed.py [--threads 2] [--repeats 1]

Prints wall and CPU seconds. The Q-score is compared with a plain implementation that asks a
KD-tree about every sphere point (the way the method is usually written), timed on a
sample of atoms and scaled to the whole model; both give the same scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryosift.density import centring_origin, model_coordinates, model_map  # noqa: E402
from cryosift.io.rotations import angular_distance  # noqa: E402
from cryosift.simulate import build_pseudoprotein  # noqa: E402
from cryosift.validate import align_maps, qscores  # noqa: E402
from tests.test_validate_qscore import plain_qscore  # noqa: E402
from tests.test_validate_support import transformed_pair  # noqa: E402


def timed(fn, repeats):
    best_wall, best_cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - w), min(best_cpu, time.process_time() - c)
    return out, best_wall, best_cpu


def bench_qscore(repeats):
    st = build_pseudoprotein(150.0, seed=1).structure
    box, apix = 128, 1.0
    origin = centring_origin(st, box, apix)
    vol = model_map(st, box, apix, resolution=3.0, origin_A=origin)
    q, wall, cpu = timed(lambda: qscores(vol, apix, st, origin_A=origin), repeats)
    n = len(q.atoms)
    print(f"Q-score, {n} atoms, {box}^3 map: {wall:.2f} s wall, {cpu:.2f} s CPU (mean Q {q.mean:.3f})")
    xyz = model_coordinates(st)
    sample = np.random.default_rng(0).choice(n, 100, replace=False)
    t = time.perf_counter()
    plain = [plain_qscore(vol, apix, origin, xyz, a) for a in sample]
    per_atom = (time.perf_counter() - t) / len(sample)
    agree = np.abs(np.array(plain) - q.atoms["q"].to_numpy()[sample]).max()
    print(f"  plain per-point KD-tree version: {per_atom * n:.0f} s for the model (from 100 atoms), "
          f"{per_atom * n / wall:.0f}x slower; largest difference {agree:.1e}")


def bench_alignment(repeats, box=128, apix=1.0):
    case = transformed_pair(150.0, box, apix, seed=5, flipped=True, noise=2.0, resolution=6.0)
    al, wall, cpu = timed(lambda: align_maps(case["reference"], case["moving"], apix), repeats)
    err_rot = angular_distance(al.rotation, case["rotation"])[0]
    err_t = np.abs(al.shift_A - case["shift_A"]).max() / apix
    print(f"Alignment of two {box}^3 maps (both hands, resampled output): {wall:.1f} s wall, {cpu:.1f} s CPU; "
          f"hand {'right' if al.flipped == case['flipped'] else 'WRONG'}, rotation error {err_rot:.2f} deg, "
          f"shift error {err_t:.2f} px, score {al.score:.3f} vs other hand {al.score_other_hand:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}")
    bench_qscore(args.repeats)
    bench_alignment(args.repeats, 64, 2.0)
    bench_alignment(args.repeats, 128, 1.0)


if __name__ == "__main__":
    main()
