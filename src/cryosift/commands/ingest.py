"""Bring a dataset into the workflow: particles.star, dataset.json and any input classification.

Examples::

    cryosift ingest --dataset apo --type relion --source Class2D/job012 --model 7a4m.cif -o results/ingest/apo
    cryosift ingest --dataset sim --type simulated --source results/simulate/sim -o results/ingest/sim
"""

import logging

from cryosift.pipeline.ingest import ingest

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("--dataset", required=True, help="dataset name")
    parser.add_argument("--type", required=True, choices=["simulated", "relion", "cryosparc"], help="source type")
    parser.add_argument("--source", required=True,
                        help="simulator output folder; particle .star/.cs; RELION Class2D or cryoSPARC 2D job")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--diameter", type=float, help="mask diameter in Å (default: simulator's, else 75%% of the box)")
    parser.add_argument("--model", help="atomic model (PDB/mmCIF) for validation")
    parser.add_argument("--pixel-size", type=float, help="Å/px for RELION 3.0 files that lack it")


def main(args):
    facts = ingest(args.type, args.source, args.out, args.dataset, diameter=args.diameter, model=args.model,
                   pixel_size=args.pixel_size)
    log.info("%s: %d particles, box %d px, %.3f Å/px, mask %.0f Å%s", args.dataset, facts["n_particles"], facts["box"],
             facts["pixel_size"], facts["diameter_A"], ", with its classification" if facts["has_classes"] else "")
