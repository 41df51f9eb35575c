"""Convert particles between cryoSPARC .cs and RELION STAR (pyem csparc2star conventions).

cs2star removes the '>' of exported paths, counts Y from the top edge (RELION) instead of
the bottom (cryoSPARC) and turns shifts into Å with the alignments' pixel size; star2cs
inverts each (see cryosift.io.convert).

Examples::

    cryosift convert cs2star J12/J12_020_particles.cs particles.star
    cryosift convert star2cs Class2D/job004/run_it025_data.star particles.cs --double
"""

import logging
import time

from cryosift.io.convert import cs_to_star, star_to_cs

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("direction", choices=["cs2star", "star2cs"], help="conversion direction")
    parser.add_argument("input", help="input .cs or .star file")
    parser.add_argument("output", help="output .star or .cs file")
    parser.add_argument("--backend", choices=["cryosift", "pyem", "auto"], default="cryosift",
                        help="cs2star: our converter, asarnow's csparc2star.py, or pyem when on PATH (default: %(default)s)")
    parser.add_argument("--prefer", choices=["3d", "2d"], default="3d",
                        help="cs2star: alignments to use when a file has both (default: %(default)s)")
    parser.add_argument("--alignments", choices=["auto", "2d", "3d", "none"], default="auto",
                        help="star2cs: alignment fields to write (default: %(default)s)")
    parser.add_argument("--double", action="store_true",
                        help="star2cs: keep float64 (exact round trips) instead of cryoSPARC's float32")
    parser.add_argument("--micrograph-shape", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="star2cs: micrograph size in px, to write location/* from coordinates "
                             "(default: read from the micrographs when they are at hand)")
    parser.add_argument("--exported", action="store_true",
                        help="star2cs: start paths with '>' like a cryoSPARC export (for a file placed in an "
                             "export folder beside its stacks); default: plain project-relative paths")
    parser.add_argument("--pixel-size", type=float, help="star2cs: Å/px for RELION 3.0 files that lack it")


def main(args):
    t0 = time.perf_counter()
    log.info("converting %s -> %s", args.input, args.output)
    if args.direction == "cs2star":
        result = cs_to_star(args.input, args.output, backend=args.backend, prefer=args.prefer)
    else:
        result = star_to_cs(args.input, args.output, double=args.double, alignments=args.alignments,
                            micrograph_shape=tuple(args.micrograph_shape) if args.micrograph_shape else None,
                            pixel_size=args.pixel_size, exported=args.exported)
    log.info("%d particles written to %s in %.1f s", len(result), args.output, time.perf_counter() - t0)
