"""Re-extract selected particles at full size for 3D reconstruction.

Each selected particle is mapped back to its unbinned image in the ingested set (the
particles as they were extracted before classification Fourier-cropped them), whichever
engine classified them: the pixels are those a re-extraction at the ingested box would cut,
without needing the micrographs. Cutting particles again from micrographs (at another box,
say) is the RELION and cryoSPARC engines' ``extract`` operation
(:class:`cryosift.engines.base.ExtractionResult`); this command has no engine option, as it
never runs one.

Examples::

    cryosift extract results/select/apo/final/score_le_3.5.star --reference results/ingest/apo/particles.star \\
        -o results/extract/apo/cutoff3.5/particles.star
"""

import logging

from cryosift.io.star import write_particles_star
from cryosift.pipeline.extract import extract_unbinned

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("particles", help="selected particles (.star or .cs)")
    parser.add_argument("--reference", required=True, help="the ingested full-size particles.star")
    parser.add_argument("-o", "--out", required=True, help="output particles.star")


def main(args):
    pset = extract_unbinned(args.particles, args.reference)
    write_particles_star(args.out, pset)
    log.info("%d particles at %d px -> %s", len(pset), pset.box, args.out)
