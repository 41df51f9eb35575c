"""Ab initio 3D map and per-particle poses from particles without poses.

Minibatch expectation-maximisation from a random map that depends on the seed alone
(same seed on another particle subset = a "cloned" run), with a coarse-to-fine search
over orientations and shifts, from the initial to the final resolution. Writes, in OUT:
abinit.mrc, abinit_half1.mrc, abinit_half2.mrc, abinit_particles.star (rlnAngleRot/Tilt/
Psi, rlnOriginX/YAngst, rlnRandomSubset) and abinit_log.csv. With ``--engine relion``,
RELION's de novo initial model runs in OUT/relion and its map and particles are written
under the same names (RELION makes no half maps here).

Examples::

    cryosift abinit selected.star -o abinit/ --seed 7
    cryosift abinit selected_3.5.star -o abinit_3.5/ --seed 7 --final-resolution 8 --device cuda
"""

import logging
import time

from cryosift.commands._engine_options import add_engine_options, engine_options
from cryosift.device import set_threads
from cryosift.engines import get_engine
from cryosift.io.convert import read_particles

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("particles", help="particles: RELION .star or cryoSPARC .cs (poses not needed)")
    parser.add_argument("-o", "--out", default="abinit", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; reuse it to clone a run (default: %(default)s)")
    parser.add_argument("--initial-resolution", type=float, default=35.0, help="Å (default: %(default)s)")
    parser.add_argument("--final-resolution", type=float, default=12.0,
                        help="Å, capped at what the box allows (default: %(default)s)")
    parser.add_argument("--engine", default="builtin",
                        help="builtin, or relion for RELION's de novo initial model (default: %(default)s)")
    parser.add_argument("--minibatch-initial", "--initial-batch", dest="initial_batch", type=int, default=300,
                        help="initial minibatch size (default: %(default)s)")
    parser.add_argument("--minibatch-final", "--final-batch", dest="final_batch", type=int, default=1000,
                        help="final minibatch size (default: %(default)s)")
    parser.add_argument("--iterations", type=int, nargs=3, metavar=("INITIAL", "RAMP", "FINAL"),
                        help="iterations at the initial settings, along the ramp and at the final settings")
    parser.add_argument("--starts", type=int, default=8,
                        help="random starting maps tried; the most likely at --select-resolution is kept (default: %(default)s)")
    parser.add_argument("--select-resolution", type=float, default=20.0,
                        help="Å at which the best start is chosen (default: %(default)s)")
    parser.add_argument("--symmetry", default="C1", help="point group: C1, Cn or Dn (default: %(default)s)")
    parser.add_argument("--mask-diameter", type=float, help="soft spherical mask, Å (default: 85%% of the box)")
    parser.add_argument("--max-shift", type=float, help="largest origin searched, Å (default: 8%% of the box)")
    parser.add_argument("--no-ctf", action="store_true", help="do not model the CTF")
    parser.add_argument("--pixel-size", type=float, help="Å/px for RELION 3.0 files that lack it")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")
    parser.add_argument("-j", "--threads", type=int, help="CPU threads (default: the allocation or all cores)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_engine_options(parser)


def main(args):
    set_threads(args.threads)
    pset = read_particles(args.particles, pixel_size=args.pixel_size)
    if len(pset) == 0:
        return _no_particles(args, pset)
    engine = get_engine(args.engine, device=args.device, threads=args.threads, **engine_options(args))
    t0 = time.perf_counter()
    result = engine.abinit(pset, args.out, seed=args.seed, initial_resolution=args.initial_resolution,
                           final_resolution=args.final_resolution, initial_batch=args.initial_batch,
                           final_batch=args.final_batch, iterations=args.iterations, symmetry=args.symmetry,
                           progress=args.progress, mask_diameter=args.mask_diameter, max_shift=args.max_shift,
                           ctf=not args.no_ctf, starts=args.starts, select_resolution=args.select_resolution)
    log.info("ab initio (%s) of %d particles in %.0f s: %s, %s", result.engine, len(pset), time.perf_counter() - t0,
             result.map, result.particles)


def _no_particles(args, pset):
    """A score cutoff that kept nothing: an empty particle set and an all-zero map (the branch completes)."""
    from cryosift.reconstruct.abinit import write_empty_abinit

    volume = write_empty_abinit(pset, args.out)
    log.warning("%s holds no particles: no ab initio; %s is an empty (all-zero) map", args.particles, volume)
