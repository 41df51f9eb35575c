"""Simulator speed and memory: particles/s at 128 px, in memory and written to disk.

Prints, for the chosen device and thread count:

- images/s rendered in memory (true particles only, and with 20 % junk);
- the same projections through Projector.project (full-plane slices, one batch), as the peer;
- images/s of a whole dataset written to disk (stack, STAR, .cs, map, model);
- peak resident memory of that run: anonymous (heap) and total (which includes the
  stack file's written pages, reclaimable page cache).

Usage::

    .venv/bin/python benchmarks/simulate_speed.py                 # 2 threads, 128 px
    .venv/bin/python benchmarks/simulate_speed.py --n 100000      # memory check at scale
    .venv/bin/python benchmarks/simulate_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from cryosift.device import pick_device, set_threads
from cryosift.io.rotations import euler_to_matrix
from cryosift.simulate import Simulator, draw_table, preset, simulate_dataset
from cryosift.simulate.structure import load_true_structure


class PeakMemory:
    """Sample /proc/self/status in a thread: peak RssAnon and VmHWM, MiB."""

    def __init__(self, every: float = 0.05):
        self.every, self.anon, self._stop = every, 0.0, threading.Event()

    @staticmethod
    def read(field: str) -> float:
        text = Path("/proc/self/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        return int(m[1]) / 1024 if m else float("nan")

    def _run(self):
        while not self._stop.is_set():
            self.anon = max(self.anon, self.read("RssAnon"))
            time.sleep(self.every)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def rate(fn, n: int, repeat: int = 2) -> tuple[float, float]:
    """Best images/s over ``repeat`` runs (after a warm-up), and images per CPU-second of the best run."""
    fn()
    best, cpu = np.inf, np.inf
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if time.perf_counter() - t0 < best:
            best, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / best, n / cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--n", type=int, default=4096, help="images written to disk")
    ap.add_argument("--batch", type=int, default=1024, help="images rendered in memory per timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="output folder (default: a temporary one)")
    args = ap.parse_args()
    set_threads(args.threads)
    device = pick_device(args.device)
    spec = preset("benchmark", box=args.box, n_particles=args.batch)
    print(f"device {device}, {torch.get_num_threads()} threads, box {spec.box} px, {spec.pixel_size} Å/px, "
          f"{spec.mass_kda:.0f} kDa pseudo-protein")

    # The dataset first, while the process holds nothing else: its memory figures are its own.
    base = PeakMemory.read("RssAnon")
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as mem:
        out = Path(args.out) if args.out else Path(tmp) / "bench"
        t0, c0 = time.perf_counter(), time.process_time()
        simulate_dataset(spec.replace(n_particles=args.n), out, device=device)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"dataset on disk ({100 * spec.junk_fraction:.0f} % junk; map, model, stack, STAR, .cs): "
          f"{args.n} images in {dt:.1f} s = {args.n / dt:.0f} images/s ({args.n / cpu:.0f} per CPU-second)")
    print(f"peak anonymous memory {mem.anon:.0f} MiB ({base:.0f} MiB before: Python, torch); "
          f"stack file {args.n * spec.box**2 * 4 / 2**20:.0f} MiB, memory-mapped")

    truth = load_true_structure(spec)
    clean = spec.replace(junk={})
    sim = Simulator(truth.volume, clean, truth.diameter_A, device=device)
    table = draw_table(clean)
    sim.calibrate(table)
    chunks = range(0, len(table), 256)
    r, c = rate(lambda: [sim.render(table.iloc[s:s + 256]) for s in chunks], len(table))
    print(f"in memory, true particles:   {r:7.0f} images/s ({c:.0f} per CPU-second)")
    junk_spec = spec.replace(junk={k: v for k, v in spec.junk.items() if k != "partial"})
    junk_table = draw_table(junk_spec)
    sim.spec = junk_spec
    r, c = rate(lambda: [sim.render(junk_table.iloc[s:s + 256]) for s in chunks], len(junk_table))
    print(f"in memory, {100 * junk_spec.junk_fraction:.0f} % junk:        {r:7.0f} images/s ({c:.0f} per CPU-second)")

    rot = euler_to_matrix(table["rot"], table["tilt"], table["psi"])
    rot_t = torch.as_tensor(rot, dtype=torch.float32, device=device)
    proj = sim.renderer.projector
    peer, _ = rate(lambda: [proj.project(rot_t[s:s + 256]) for s in chunks], len(rot), repeat=1)
    ours, _ = rate(lambda: [sim.renderer.project(rot[s:s + 256]) for s in chunks], len(rot))
    print(f"projection only: {ours:7.0f} images/s vs Projector.project {peer:7.0f} images/s "
          f"(ratio {ours / peer:.1f}x)")


if __name__ == "__main__":
    main()
