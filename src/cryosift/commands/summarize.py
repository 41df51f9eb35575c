"""Summarise one dataset's run: particles per round, kept per cutoff, validation per cutoff.

Example::

    cryosift summarize --info results/ingest/apo/dataset.json --rounds results/select/apo/round*/selection.json \\
        --final results/select/apo/final/selection.json --validations results/validate/apo/*/validation.json \\
        -o results/summary/apo.json
"""

import logging

from cryosift.pipeline.summary import write_summary

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("--info", required=True, help="dataset.json from ingest")
    parser.add_argument("--rounds", nargs="+", required=True, help="selection.json of each round, in order")
    parser.add_argument("--final", required=True, help="selection.json of the final split")
    parser.add_argument("--validations", nargs="*", default=[], help="validation.json per cutoff")
    parser.add_argument("-o", "--out", required=True, help="output JSON")


def main(args):
    s = write_summary(args.out, info=args.info, rounds=args.rounds, final=args.final, validations=args.validations)
    for cutoff, c in s["cutoffs"].items():
        log.info("%s score <= %s: %d particles (%.0f %%)", s["dataset"], cutoff, c["particles"], 100 * c["fraction"])
    for w in s["warnings"]:
        log.warning("%s, %s: %s", s["dataset"], w["step"], w["warning"])
