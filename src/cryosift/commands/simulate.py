"""Simulate a ground-truth dataset: particle stack with CTF, noise and labelled junk, STAR, .cs, true map and model.

Settings come from a preset, a YAML file and flags, in that order (see docs/simulate.md).

Examples::

    cryosift simulate sim/demo --preset demo
    cryosift simulate sim/mine --config sim.yaml --n-particles 20000 --seed 3
    cryosift simulate sim/apo --structure apo.cif --box 160 --pixel-size 1.2 --snr 0.03 --junk partial=0.1
    cryosift simulate sim/cftr --structure pdb:6MSM --box 128 --pixel-size 1.5
    cryosift simulate --list-structures
    cryosift simulate --preset tiny --print-config > tiny.yaml
"""

import argparse
import logging
import sys
import time

from cryosift.device import set_threads
from cryosift.errors import InputError
from cryosift.simulate import JUNK_TYPES, PRESETS, simulate_dataset
from cryosift.simulate.atomic_models import list_structures
from cryosift.simulate.presets import resolve_spec

log = logging.getLogger(__name__)


def _junk(text: str) -> tuple[str, float]:
    kind, sep, frac = text.partition("=")
    if not sep or kind not in JUNK_TYPES:
        raise argparse.ArgumentTypeError(f"expected TYPE=FRACTION with TYPE one of {', '.join(JUNK_TYPES)}")
    try:
        return kind, float(frac)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fraction {frac!r} is not a number") from None


def add_args(parser):
    parser.add_argument("out_dir", nargs="?", help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from named settings")
    parser.add_argument("--config", help="YAML settings file (overrides the preset)")
    g = parser.add_argument_group("structure")
    g.add_argument("--structure", help='"pseudo" (default), "pdb:ID" (a shipped real structure: '
                                       '--list-structures) or a PDB/mmCIF model')
    g.add_argument("--micelle", action=argparse.BooleanOptionalAction, default=None,
                   help="detergent micelle around a pdb:ID structure (default: membrane proteins only)")
    g.add_argument("--list-structures", action="store_true", help="list the shipped real structures and stop")
    g.add_argument("--mass-kda", type=float, help="pseudo-protein mass, kDa")
    g.add_argument("--shape", choices=["globular", "elongated", "multidomain"], help="pseudo-protein shape")
    g.add_argument("--symmetry", help="point group, e.g. C1, C4, D2")
    g.add_argument("--map-resolution", type=float, help="low-pass of the true map, Å (default 2 x pixel size)")
    g = parser.add_argument_group("images")
    g.add_argument("--box", type=int, help="box size, px")
    g.add_argument("--pixel-size", type=float, help="Å/px")
    g.add_argument("-n", "--n-particles", type=int, help="number of images, junk included")
    g.add_argument("--snr", type=float, help="signal-to-noise ratio of true particles")
    g.add_argument("--orientations", choices=["uniform", "preferred", "views"])
    g.add_argument("--n-views", type=int, help="distinct views (views mode) or view labels")
    g.add_argument("--preferred-direction", type=float, nargs=2, metavar=("ROT", "TILT"), help="degrees")
    g.add_argument("--preferred-strength", type=float, help="concentration of the preferred-view bias")
    g.add_argument("--shift-sd", type=float, dest="shift_sd_A", help="in-plane shift SD per axis, Å")
    g.add_argument("--binned-box", type=int, help="also write a Fourier-binned stack at this box")
    g = parser.add_argument_group("CTF")
    g.add_argument("--voltage", type=float, help="kV")
    g.add_argument("--cs", type=float, dest="spherical_aberration", help="spherical aberration, mm")
    g.add_argument("--amplitude-contrast", type=float)
    g.add_argument("--defocus-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="Å")
    g.add_argument("--astigmatism", type=float, help="largest |defocus U - V|, Å")
    g.add_argument("--phase-shift-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="degrees")
    g.add_argument("--bfactor-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="CTF B-factor, Å²")
    g.add_argument("--particles-per-micrograph", type=int)
    g = parser.add_argument_group("junk and run")
    g.add_argument("--junk", type=_junk, action="append", metavar="TYPE=FRACTION",
                   help=f"fraction of junk of a type ({', '.join(JUNK_TYPES)}); repeatable")
    g.add_argument("--no-junk", action="store_true", help="no junk at all")
    g.add_argument("--seed", type=int)
    g.add_argument("--name", help="dataset name")
    g.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")
    g.add_argument("-j", "--threads", type=int, help="CPU threads (default: all allotted)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--print-config", action="store_true", help="print the resolved settings as YAML and stop")


_FLAGS = ("structure", "mass_kda", "shape", "symmetry", "map_resolution", "box", "pixel_size", "n_particles", "snr",
          "orientations", "n_views", "preferred_direction", "preferred_strength", "shift_sd_A", "binned_box",
          "voltage", "spherical_aberration", "amplitude_contrast", "defocus_range", "astigmatism",
          "phase_shift_range", "bfactor_range", "particles_per_micrograph", "seed", "name", "micelle")


def _print_structures() -> None:
    sys.stdout.write("id\tpoint group\tmass (kDa)\tmembrane\tmolecule\n")
    for e in list_structures():
        sys.stdout.write(f"pdb:{e.id}\t{e.symmetry}\t{e.mass_kda:.1f}\t{'yes' if e.membrane else 'no'}\t{e.name}\n")


def main(args):
    if args.list_structures:
        _print_structures()
        return 0
    overrides = {k: getattr(args, k) for k in _FLAGS}
    junk = {k: 0.0 for k in JUNK_TYPES} if args.no_junk else {}
    junk.update(dict(args.junk or []))
    overrides["junk"] = junk or None
    spec = resolve_spec(args.preset, args.config, overrides)
    if args.print_config:
        sys.stdout.write(spec.to_yaml())
        return 0
    if not args.out_dir:
        raise InputError(None, "give an output folder (or --print-config)")
    set_threads(args.threads)
    t0 = time.perf_counter()
    ds = simulate_dataset(spec, args.out_dir, progress=not args.no_progress, device=args.device, source=args.config)
    dt = time.perf_counter() - t0
    junk_counts = {k: v for k, v in ds.info["junk_counts"].items() if v}
    log.info("%d images (%d true; junk %s) written to %s in %.1f s",
             ds.info["n_particles"], ds.info["n_true"], junk_counts or "none", ds.out_dir, dt)
    log.info("particle: %.0f kDa %s, diameter %.0f Å; map %s, model %s", ds.info["mass_kda"], ds.info["symmetry"],
             ds.info["diameter_A"], ds.map_mrc, ds.model_cif)
    return 0
