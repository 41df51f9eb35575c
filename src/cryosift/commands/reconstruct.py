"""Reconstruct a map and gold-standard half maps from particles with known poses.

Particles are CTF-corrected and inserted in Fourier space (2x oversampled, trilinear,
gridding-corrected); each shell is Wiener-filtered by the SNR measured between the half
sets (rlnRandomSubset). Writes OUT.mrc, OUT_half1.mrc and OUT_half2.mrc (voxel size = the
particles' pixel size).

Examples::

    cryosift reconstruct abinit/abinit_particles.star -o recon/map
    cryosift reconstruct Refine3D/job020/run_data.star -o recon/map --symmetry D2
    cryosift reconstruct J42_particles.cs -o recon/map --no-halves
"""

import logging
import time

from cryosift.device import set_threads
from cryosift.io.convert import read_particles
from cryosift.reconstruct import write_reconstruction

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("particles", help="particles with poses: RELION .star or cryoSPARC .cs")
    parser.add_argument("-o", "--out", default="reconstruction",
                        help="output name; writes OUT.mrc and OUT_half1/2.mrc (default: %(default)s)")
    parser.add_argument("--symmetry", default="C1", help="point group: C1, Cn or Dn (default: %(default)s)")
    parser.add_argument("--no-halves", action="store_true",
                        help="write only the full map (for particles without rlnRandomSubset)")
    parser.add_argument("--no-ctf", action="store_true", help="do not correct for the CTF")
    parser.add_argument("--no-wiener", action="store_true",
                        help="divide by the CTF^2 sum only, without the half-set SNR filter")
    parser.add_argument("--pixel-size", type=float, help="Å/px for RELION 3.0 files that lack it")
    parser.add_argument("--chunk", type=int, default=256, help="particles read at a time (default: %(default)s)")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")
    parser.add_argument("-j", "--threads", type=int, help="CPU threads (default: the allocation or all cores)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def main(args):
    set_threads(args.threads)
    t0 = time.perf_counter()
    pset = read_particles(args.particles, pixel_size=args.pixel_size)
    paths = write_reconstruction(pset, args.out, symmetry=args.symmetry, halves=not args.no_halves,
                                 device=args.device, chunk=args.chunk, progress=args.progress,
                                 ctf=not args.no_ctf, wiener=not args.no_wiener)
    log.info("%d particles reconstructed (%s) in %.1f s: %s", len(pset), args.symmetry, time.perf_counter() - t0,
             ", ".join(str(p) for p in paths.values()))
