"""Command-line options that reach an engine's constructor (shared by the commands that run engines)."""

from __future__ import annotations


def add_engine_options(parser) -> None:
    """``--mpi``, ``--relion-gpu`` and ``--relion-prefix`` (read by the RELION engine, ignored by the others)."""
    group = parser.add_argument_group("RELION engine")
    group.add_argument("--mpi", type=int, default=1,
                       help="MPI ranks for relion_refine (mpirun -n; 1 runs the threaded program) (default: %(default)s)")
    group.add_argument("--relion-gpu", action="store_true",
                       help="run relion_refine on the GPUs it is given (--gpu; needs a CUDA build of RELION)")
    group.add_argument("--relion-prefix", default="",
                       help="folder holding RELION's programs (default: found on PATH)")


def engine_options(args) -> dict:
    """Constructor keywords for whichever engine ``args.engine`` names: every engine takes them,
    and those that run no RELION program ignore them."""
    return {"mpi": args.mpi, "prefix": args.relion_prefix, "gpu": args.relion_gpu}
