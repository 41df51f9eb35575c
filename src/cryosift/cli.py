"""The ``cryosift`` command line: a thin layer over importable functions.

Each module in :mod:`cryosift.commands` is a subcommand with ``add_args(parser)`` and
``main(args)``; the first line of its docstring is the help text.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from cryosift import __version__
from cryosift.errors import EngineError, InputError
from cryosift.logs import log_to_stderr


def _commands() -> list[str]:
    import cryosift.commands as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryosift", description="Score cryo-EM 2D class averages, select particles and validate the selection per cutoff.")
    parser.add_argument("--version", action="version", version=f"cryosift {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _commands():
        module = importlib.import_module(f"cryosift.commands.{name}")
        doc = (module.__doc__ or name).strip()
        first, _, rest = doc.partition("\n")
        p = sub.add_parser(name.replace("_", "-"), help=first, description=first, epilog=rest.strip() or None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_args(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with log_to_stderr(args.debug):
            result = args._main(args)
    except InputError as exc:
        if args.debug:
            raise
        print(f"cryosift {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        if args.debug:
            raise
        print(f"cryosift {args.command}: {exc.engine} error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
