"""Classify particles into 2D class averages (maximum likelihood, RELION-compatible output).

Writes a RELION Class2D job folder (run_itNNN_model.star, _data.star, _classes.mrcs, and
run_itNNN_optimiser.star last), plus the final iteration as cryoSPARC .cs files.

Examples::

    cryosift classify2d particles.star -o Class2D/job010 --classes 50 --diameter 180
    cryosift classify2d J12_particles.cs -o Class2D/job011 --classes 20 --iterations 25 --device cuda
    cryosift classify2d particles.star -o Class2D/job010 --iterations 30 --continue
    cryosift classify2d kept.star -o round2/ --manifest round2/classification.json \
        --previous round1/classification.json --previous-selection select/round1/selection.json
"""

import logging

from cryosift.commands._engine_options import add_engine_options, engine_options
from cryosift.engines import Resume, get_engine
from cryosift.engines.builtin.params import BuiltinClass2DParams
from cryosift.pipeline.manifest import reuse_manifest, write_empty_manifest, write_manifest
from cryosift.pipeline.plan import StepAction, classification_action

log = logging.getLogger(__name__)


def add_args(parser):
    d = BuiltinClass2DParams()
    parser.add_argument("particles", help="particles: RELION .star or cryoSPARC .cs (with CTF parameters)")
    parser.add_argument("-o", "--output", required=True, help="job folder to write (RELION Class2D layout)")
    parser.add_argument("--engine", default="builtin", help="engine (default: %(default)s)")
    parser.add_argument("-K", "--classes", type=int, default=d.classes, help="number of classes (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=d.iterations, help="EM iterations (default: %(default)s)")
    parser.add_argument("--diameter", type=float, default=d.particle_diameter,
                        help="mask diameter in Å (default: 90%% of the box)")
    parser.add_argument("--tau2-fudge", type=float, default=d.tau2_fudge,
                        help="regularisation T; higher = sharper, noisier (default: %(default)s)")
    parser.add_argument("--psi-step", type=float, default=d.psi_step,
                        help="in-plane angular step of the coarse pass, degrees (default: %(default)s)")
    parser.add_argument("--offset-range", type=float, default=d.offset_range,
                        help="offset search range, px of the classification box (default: %(default)s)")
    parser.add_argument("--offset-step", type=float, default=d.offset_step,
                        help="offset step of the coarse pass, px (default: %(default)s)")
    parser.add_argument("--oversampling", type=int, default=d.oversampling, choices=(0, 1, 2),
                        help="adaptive oversampling order (default: %(default)s)")
    parser.add_argument("--highres-limit", type=float, default=d.highres_limit,
                        help="highest resolution used in alignment, Å (default: none)")
    parser.add_argument("--box", type=int, default=d.box,
                        help="classification box in px; particles are Fourier-cropped to it (default: automatic, <= 100)")
    parser.add_argument("--no-center", action="store_true", help="do not re-centre class averages")
    parser.add_argument("--hard", action="store_true", help="hard assignment instead of marginalising")
    parser.add_argument("--minibatch", type=int, default=d.minibatch,
                        help="particles per early iteration (0: automatic for large sets, -1: never)")
    parser.add_argument("--full-iterations", type=int, default=d.full_iterations,
                        help="final iterations that use every particle (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "tf32", "bf16"),
                        help="precision of the coarse search on CUDA (default: %(default)s)")
    parser.add_argument("--write-every", type=int, default=d.write_every,
                        help="write iteration files every n iterations (default: %(default)s)")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="continue from the job's last finished iteration")
    parser.add_argument("--continue-if-same", dest="resume_if_same", action="store_true",
                        help="continue a killed run made with the same settings; otherwise start afresh "
                             "(what workflow reruns use)")
    parser.add_argument("--manifest", help="also write this classification manifest (JSON naming the finished files)")
    parser.add_argument("--previous", help="manifest of the previous loop round's classification")
    parser.add_argument("--previous-selection",
                        help="selection.json of the previous round: when it ended the loop, the previous "
                             "classification is reused (--manifest then names it) and nothing is classified")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")
    parser.add_argument("-j", "--threads", type=int, help="CPU threads (default: all allocated)")
    add_engine_options(parser)


def options_from_args(args) -> dict:
    """The classification settings given on the command line, as engine options.

    Every engine takes the common ones and ignores the builtin engine's search settings it
    has no counterpart for (see :mod:`cryosift.engines.base`); the defaults are the builtin
    engine's (:class:`BuiltinClass2DParams`).
    """
    return dict(
        classes=args.classes, iterations=args.iterations, particle_diameter=args.diameter, tau2_fudge=args.tau2_fudge,
        psi_step=args.psi_step, offset_range=args.offset_range, offset_step=args.offset_step,
        oversampling=args.oversampling, highres_limit=args.highres_limit, box=args.box, center_classes=not args.no_center,
        hard=args.hard, minibatch=args.minibatch, full_iterations=args.full_iterations, seed=args.seed,
        precision=args.precision, write_every=args.write_every)


def resume_from_args(args) -> Resume:
    """``--continue`` and ``--continue-if-same`` as the engine protocol's :class:`Resume`."""
    if args.resume_if_same:
        return Resume.IF_SAME
    return Resume.CONTINUE if args.resume else Resume.AFRESH


def main(args):
    action = classification_action(args.manifest, args.previous, args.previous_selection, args.particles)
    if action is StepAction.REUSE:
        reuse_manifest(args.manifest, args.previous)
        log.info("the loop stopped after the previous round: %s reuses %s", args.manifest, args.previous)
        return
    if action is StepAction.EMPTY:
        # Every particle was rejected earlier: record an empty classification so the dataset
        # completes with "no particles kept" instead of stopping the whole run.
        write_empty_manifest(args.manifest, args.engine, args.particles)
        log.warning("%s holds no particles (every particle was rejected before this step): %s records an empty "
                    "classification", args.particles, args.manifest)
        return
    engine = get_engine(args.engine, device=args.device, threads=args.threads, **engine_options(args))
    result = engine.classify2d(args.particles, args.output, resume=resume_from_args(args), **options_from_args(args))
    if args.manifest:
        write_manifest(args.manifest, args.engine, result.job_dir)
    log.info("%s: %d classes after iteration %d in %.1f s", result.model_star, args.classes, result.iteration,
             result.extra.get("wall_s", float("nan")))
