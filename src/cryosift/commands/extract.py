"""Re-extract selected particles at full size for 3D reconstruction.

With micrographs (rlnMicrographName and coordinates) and an engine that extracts (RELION),
the particles are cut again from the micrographs; otherwise each selected particle is mapped
back to its unbinned image in the ingested set.

Examples::

    cryosift extract results/select/apo/final/score_le_3.5.star --reference results/ingest/apo/particles.star \\
        -o results/extract/apo/cutoff3.5/particles.star
"""

import logging
from pathlib import Path

from cryosift.commands._engine_options import add_engine_options, engine_options
from cryosift.io.atomic import write_text_atomic
from cryosift.io.star import write_particles_star
from cryosift.pipeline.extract import extract_unbinned

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("particles", help="selected particles (.star or .cs)")
    parser.add_argument("--reference", required=True, help="the ingested full-size particles.star")
    parser.add_argument("-o", "--out", required=True, help="output particles.star")
    parser.add_argument("--engine", default="builtin", help="engine that re-extracts from micrographs (default: %(default)s)")
    parser.add_argument("--from-micrographs", action="store_true",
                        help="cut the particles again from their micrographs with the engine (RELION)")
    parser.add_argument("-j", "--threads", type=int, default=1, help="threads for the engine")
    add_engine_options(parser)


def main(args):
    if args.from_micrographs:
        from cryosift.engines import get_engine

        engine = get_engine(args.engine, threads=args.threads, **engine_options(args))
        star = engine.extract(args.particles, Path(args.out).parent / "extract_job")
        write_text_atomic(args.out, Path(star).read_text())
        return
    pset = extract_unbinned(args.particles, args.reference)
    write_particles_star(args.out, pset)
    log.info("%d particles at %d px -> %s", len(pset), pset.box, args.out)
