"""Compare validated maps across datasets and score cutoffs: table (CSV, Markdown) and figures.

Reads validation.json files (or folders holding them) written by ``cryosift validate`` and
writes OUT/comparison.csv, OUT/comparison.md and, in OUT/plots, PNG and SVG figures after
the paper: fraction_kept (Fig. 3b), resolution (4a), resolution_gain (4b), qscore (4c),
qscore_gain (4d), reslog (5) and fsc_curves.

Examples::

    cryosift report results/validate -o results/report
    cryosift report results/validate/*/cutoff*/validation.json --baseline 4.5 --compare 3.5 -o report
"""

import logging

from cryosift.report.summary import write_report

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("validations", nargs="+", help="validation.json files or folders holding them")
    parser.add_argument("--summaries", nargs="*", default=[],
                        help="per-dataset summary JSON files (fill particle counts the validations lack)")
    parser.add_argument("--baseline", type=float,
                        help="cutoff the gains are measured from (default: each dataset's loosest, e.g. 4.5)")
    parser.add_argument("--compare", type=float, default=3.5,
                        help="cutoff whose gains are plotted (default: %(default)s)")
    parser.add_argument("-o", "--out", default="report", help="output folder (default: %(default)s)")


def main(args):
    written = write_report(args.validations, args.out, baseline=args.baseline, compare=args.compare,
                           summaries=args.summaries)
    for name, paths in written.items():
        log.info("%s: %s", name, ", ".join(str(p) for p in paths))
