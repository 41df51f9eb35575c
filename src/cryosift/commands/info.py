"""Summarise an MRC, STAR or .cs file: counts, box, pixel size, columns.

Examples::

    cryosift info particles.star
    cryosift info J12/J12_020_class_averages.cs --json
"""

import json

from cryosift.io.info import format_summary, summarize


def add_args(parser):
    parser.add_argument("files", nargs="+", help="MRC/MRCS, STAR or .cs files")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--check", action="store_true",
                        help="for particle files, also check that every image exists in its stack")


def main(args):
    infos = [summarize(f, check_images=args.check) for f in args.files]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2, default=str))
    else:
        print("\n".join(format_summary(i) for i in infos))
