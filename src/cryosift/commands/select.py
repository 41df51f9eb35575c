"""Select particles by CryoSift class scores: loop rounds, final cutoff split, pooling.

The published iterative policy: rounds from the extraction box (< 200 px: 5, 200-300 px: 3,
> 300 px: 2); in round 1 the best 70% of classes scoring <= 2.5 leave the loop as accepted
and the rest stay as attractors; every round rejects classes scoring >= 4.5; a round from
2 on that rejects nothing ends the loop. The final classification is split at cutoffs
(keep classes scoring <= 2.5 / 3.5 / 4.5). Scores are compared as numbers.

Examples::

    cryosift select rounds --box 256
    cryosift select round --particles Class2D/job012/run_it025_data.star --scores score/scores.csv \\
        --round 1 --box 256 -o select/round1
    cryosift select pool select/round3/kept.star select/round1/accepted.star -o pooled.star
    cryosift select final --particles Class2D/job020/run_it025_data.star --scores final/scores.csv -o final/
"""

import logging

from cryosift.pipeline.manifest import classified_particles
from cryosift.selection import SelectionPolicy, apply_final, apply_round, pool_particles, rounds_for_box

log = logging.getLogger(__name__)


def _common(p):
    p.add_argument("--particles", required=True, help="2D classification particles: run_itNNN_data.star, *_particles.cs or a classification.json manifest")
    p.add_argument("--scores", required=True, help="scores.csv or scores.star of that classification")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--format", nargs="+", choices=["star", "cs"], help="output format(s) (default: the input's)")
    p.add_argument("--no-annotate", action="store_true",
                   help="do not add rlnParticleFigureOfMerit / rlnClassScore to STAR subsets")


def add_args(parser):
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    r = sub.add_parser("rounds", help="print the number of rounds for an extraction box")
    r.add_argument("--box", type=int, required=True, help="extraction box in px")

    rd = sub.add_parser("round", help="one loop round: accepted / kept / rejected particles")
    _common(rd)
    rd.add_argument("--round", type=int, required=True, help="1-based round number")
    group = rd.add_mutually_exclusive_group()
    group.add_argument("--rounds", type=int, help="planned rounds (default: from --box)")
    group.add_argument("--box", type=int, help="extraction box in px (default: the particles' box)")
    rd.add_argument("--accept-score", type=float, default=2.5, help="attractor-rule threshold (default: %(default)s)")
    rd.add_argument("--accept-fraction", type=float, default=0.7,
                    help="fraction of those classes accepted, best first (default: %(default)s)")
    rd.add_argument("--reject-score", type=float, default=4.5, help="reject classes scoring >= this (default: %(default)s)")
    rd.add_argument("--accept-every-round", action="store_true", help="apply the attractor rule in every round")

    f = sub.add_parser("final", help="split the final classification at score cutoffs")
    _common(f)
    f.add_argument("--cutoffs", type=float, nargs="+", default=[2.5, 3.5, 4.5],
                   help="keep classes scoring <= each cutoff (default: %(default)s)")

    p = sub.add_parser("pool", help="concatenate particle files of one data set")
    p.add_argument("inputs", nargs="+", help=".star or .cs particle files")
    p.add_argument("-o", "--out", required=True, help="output .star or .cs")


def main(args):
    if args.step == "rounds":
        print(rounds_for_box(args.box))
    elif args.step == "round":
        policy = SelectionPolicy(accept_score=args.accept_score, accept_fraction=args.accept_fraction,
                                 reject_score=args.reject_score, accept_every_round=args.accept_every_round)
        s = apply_round(classified_particles(args.particles), args.scores, args.out, args.round, rounds=args.rounds, box=args.box,
                        policy=policy, formats=args.format, annotate=not args.no_annotate)
        n = s["particles"]
        log.info("round %d of %d: %d accepted, %d attractor, %d kept, %d rejected particles; next: %s",
                 s["round"], s["rounds"], n["accepted"], n["attractor"], n["kept"], n["rejected"], s["next"])
    elif args.step == "final":
        s = apply_final(classified_particles(args.particles), args.scores, args.out, cutoffs=args.cutoffs, formats=args.format,
                        annotate=not args.no_annotate)
        for cutoff, r in s["cutoffs"].items():
            log.info("score <= %s: %d classes, %d of %d particles", cutoff, len(r["classes_kept"]),
                     r["particles_kept"], s["particles"]["total"])
    else:
        n = pool_particles(args.inputs, args.out)
        log.info("pooled %d particles into %s", n, args.out)
