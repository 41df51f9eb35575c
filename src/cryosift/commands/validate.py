"""Validate a reconstruction: fit the model (rotation, shift, hand), FSC, Q-score, ResLog.

The model map is simulated on the map's own box, voxel size and header origin (8 Å
Gaussian low-pass, as in the paper) after superposing the map on the model; ab initio
maps of the wrong hand are mirrored. Results go to OUT/validation.json with FSC curves,
per-atom and per-residue Q-scores, the fitted model and, with particles, ResLog.

Examples::

    cryosift validate abinit/map.mrc --model 1abc.cif --particles abinit/particles.star \\
        --dataset aldolase --cutoff 3.5 --total-particles 250000 -o validate/aldolase/3.5
    cryosift validate refined.mrc --model fitted.pdb --half-maps h1.mrc h2.mrc --no-align --no-reslog -o val
"""

import logging
import time
from pathlib import Path

from cryosift.device import pick_device, set_threads
from cryosift.validate.run import validate_map

log = logging.getLogger(__name__)


def _count_or_file(value: str):
    return int(value) if value.isdigit() else value


def add_args(parser):
    parser.add_argument("map", help="reconstruction (.mrc)")
    parser.add_argument("--model", help="atomic model (PDB/mmCIF); without it only half-map FSC and ResLog")
    parser.add_argument("--half-maps", nargs=2, metavar=("HALF1", "HALF2"),
                        help="half maps (default: MAP_half1.mrc and MAP_half2.mrc beside the map, if present)")
    parser.add_argument("--particles", help="particles of the reconstruction (.star/.cs; with poses for ResLog)")
    parser.add_argument("--total-particles", type=_count_or_file, metavar="N_OR_FILE",
                        help="particles before selection: a number or a particle file")
    parser.add_argument("--dataset", help="dataset name (default: the map's folder name)")
    parser.add_argument("--cutoff", type=float, help="score cutoff that selected the particles")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="the model already fits the map: skip the superposition and hand check")
    parser.add_argument("--model-resolution", type=float, default=8.0,
                        help="Gaussian low-pass of the model map, Å (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=0.6, help="Q-score reference width, Å (default: %(default)s)")
    parser.add_argument("--reslog", action="store_true", default=True,
                        help="run ResLog when --particles is given (default)")
    parser.add_argument("--no-reslog", dest="reslog", action="store_false", help="skip ResLog")
    parser.add_argument("--reslog-sizes", type=int, nargs="+", metavar="N",
                        help="ResLog subset sizes (default: all particles, halving down to 100)")
    parser.add_argument("--symmetry", default="C1", help="point group of the ResLog reconstructions (default: C1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of ResLog subsets (default: %(default)s)")
    parser.add_argument("-o", "--out", default="validation", help="output folder (default: %(default)s)")
    parser.add_argument("-j", "--threads", type=int, help="CPU threads (default: all allotted)")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")


def _sibling_half_maps(map_path: str):
    p = Path(map_path)
    stem = p.with_suffix("")
    halves = [stem.with_name(f"{stem.name}_half{i}.mrc") for i in (1, 2)]
    return [str(h) for h in halves] if all(h.is_file() for h in halves) else None


def main(args):
    set_threads(args.threads)
    device = pick_device(args.device)
    half_maps = args.half_maps or _sibling_half_maps(args.map)
    if half_maps and not args.half_maps:
        log.info("half maps found beside the map: %s", ", ".join(half_maps))
    run_reslog = bool(args.reslog and args.particles)
    if args.reslog and not args.particles:
        log.info("no --particles: ResLog skipped")
    t0 = time.perf_counter()
    result = validate_map(
        args.map, args.model, args.out, half_maps=half_maps, particles=args.particles,
        total_particles=args.total_particles, dataset=args.dataset, cutoff=args.cutoff, align=args.align,
        model_resolution=args.model_resolution or None, sigma=args.sigma, run_reslog=run_reslog,
        reslog_sizes=args.reslog_sizes, symmetry=args.symmetry, seed=args.seed, device=device,
    )
    parts = [f"{k} {result[k]:.2f} Å" for k in ("fsc05_model_A", "fsc0143_half_masked_A") if result.get(k)]
    if result.get("qscore_mean") is not None:
        parts.append(f"mean Q {result['qscore_mean']:.3f} (expected {result['expected_qscore'] or float('nan'):.3f})")
    if result.get("reslog") and result["reslog"].get("b_factor_A2"):
        parts.append(f"ResLog B {result['reslog']['b_factor_A2']:.0f} Å²")
    log.info("%s: %s in %.0f s", args.out, "; ".join(parts) or "no metrics", time.perf_counter() - t0)
