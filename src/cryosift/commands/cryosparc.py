"""Run CryoSift's steps as jobs on a CryoSPARC server (check, plan, classify, select, reconstruct).

Settings come from --config (a YAML/JSON file with a ``cryosparc:`` block, e.g. the workflow's
config.yaml) or CRYOSIFT_CRYOSPARC_CONFIG; the password from a 0600 file or CRYOSPARC_PASSWORD.
``plan`` needs no server: it prints the job graph (types, parameters, connections).

Examples::

    cryosift cryosparc check --config config/config.yaml
    cryosift cryosparc plan --config config/config.yaml --box 256 --source J10.particles
    cryosift cryosparc export J12 -o results/classify/apof/round1
    cryosift cryosparc classify select/apof/round1/kept.cs -o results/classify/apof/round2 --classes 50
    cryosift cryosparc scores --classification results/classify/apof/round2 \\
        --scores results/score/apof/round2/scores.csv
    cryosift cryosparc select --classification results/classify/apof/round2 \\
        --selection results/select/apof/round2/selection.json -o results/cryosparc_select/apof/round2
    cryosift cryosparc reconstruct --particles results/cryosparc_select/apof/final/score_le_3.5.cs \\
        -o results/reconstruct/apof/score_le_3.5
"""

import json
import logging

from cryosift.engines.cryosparc import CryosparcEngine, render_plan
from cryosift.errors import InputError

log = logging.getLogger(__name__)


def _settings_args(p):
    p.add_argument("--config", help="YAML/JSON file with a cryosparc: block (default: $CRYOSIFT_CRYOSPARC_CONFIG)")
    p.add_argument("--project", help="project UID, e.g. P3 (overrides the configuration)")
    p.add_argument("--workspace", help="workspace UID, e.g. W2 (overrides the configuration)")
    p.add_argument("--run", help="run name: job titles and tag (overrides the configuration)")


def add_args(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="log in, compare versions, open the project and workspace")
    _settings_args(c)

    p = sub.add_parser("plan", help="print the job graph of a run (no server needed)")
    _settings_args(p)
    p.add_argument("--box", type=int, help="full extraction box in px (default: cryosparc.extraction_box)")
    p.add_argument("--source", help="particles to classify first, e.g. J10.particles (not with a starter job)")
    p.add_argument("--dataset", default="data", help="dataset name in step names (default: %(default)s)")
    p.add_argument("--rounds", type=int, help="loop rounds (default: from the box)")
    p.add_argument("--cutoffs", type=float, nargs="+", default=[2.5, 3.5, 4.5],
                   help="final score cutoffs (default: %(default)s)")
    p.add_argument("--seed", type=int, help="ab initio seed (default: configured, else drawn by the run)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    e = sub.add_parser("export", help="export an existing 2D job (e.g. the starter job) as a Class2D folder")
    _settings_args(e)
    e.add_argument("job", help="2D classification job UID, e.g. J12")
    e.add_argument("-o", "--output", required=True, help="export folder")

    k = sub.add_parser("classify", help="2D classification on the server, exported as a Class2D folder")
    _settings_args(k)
    k.add_argument("particles", nargs="+", help="job outputs (J10.particles) or exported .cs files; several are pooled")
    k.add_argument("-o", "--output", required=True, help="export folder")
    k.add_argument("--step", help="step name in the job title (default: the last two parts of --output)")
    k.add_argument("-K", "--classes", type=int, help="number of classes (default: starter job or cryoSPARC's)")
    k.add_argument("--diameter", type=float, help="circular mask diameter in Å")
    k.add_argument("--seed", type=int, help="random seed of the 2D job")
    k.add_argument("--box", type=int, help="full extraction box in px (chooses the 2D job type)")

    s = sub.add_parser("scores", help="show CryoSift scores in CryoSPARC (External job)")
    _settings_args(s)
    s.add_argument("--classification", required=True, help="exported classification folder")
    s.add_argument("--scores", required=True, help="its scores.csv or scores.star")
    s.add_argument("--step", help="step name in the job title (default: from --scores' folder)")

    sel = sub.add_parser("select", help="apply a selection.json of `cryosift select` on the server")
    _settings_args(sel)
    sel.add_argument("--classification", required=True, help="exported classification folder")
    sel.add_argument("--selection", required=True, help="selection.json of `cryosift select round|final`")
    sel.add_argument("-o", "--output", required=True, help="folder for <subset>.cs/.star and cryosparc.json")
    sel.add_argument("--method", choices=["select_2D", "external"], help="default: cryosparc.select_method")
    sel.add_argument("--step", help="step name in the job titles (default: the last two parts of --output)")

    r = sub.add_parser("reconstruct", help="one cutoff: re-extract, ab initio, reconstruct, validation jobs")
    _settings_args(r)
    r.add_argument("--particles", required=True, help="selected particles (.cs exported by `select`) or J.output")
    r.add_argument("-o", "--output", required=True, help="folder for extract/, abinit/, reconstruct/")
    r.add_argument("--box", type=int, help="full extraction box in px (default: cryosparc.extraction_box)")
    r.add_argument("--seed", type=int, help="ab initio seed (default: the run's)")
    r.add_argument("--step", help="step name in the job titles (default: the last two parts of --output)")


def _engine(args) -> CryosparcEngine:
    return CryosparcEngine(args.config, project=args.project, workspace=args.workspace, run=args.run)


def main(args):
    engine = _engine(args)
    if args.action == "check":
        info = engine.check()
        print(f"CryoSPARC {info['server_version']} (cryosparc-tools {info['tools_version']}): "
              f"project {info['project']} '{info['project_title']}', workspace {info['workspace']} "
              f"'{info['workspace_title']}'")
    elif args.action == "plan":
        box = args.box or engine.settings.extraction_box
        if not box:
            raise InputError(None, "give --box or set cryosparc.extraction_box")
        specs = engine.plan(box, source=args.source, rounds=args.rounds, cutoffs=args.cutoffs, seed=args.seed,
                            dataset=args.dataset)
        print(render_plan(specs, as_json=args.json))
    elif args.action == "export":
        result = engine.adopt(args.job, args.output)
        log.info("%s: %d classes (iteration %d) exported to %s", args.job, len(result.extra["counts"]),
                 result.iteration, args.output)
    elif args.action == "classify":
        options = {k: v for k, v in (("classes", args.classes), ("particle_diameter", args.diameter),
                                     ("seed", args.seed)) if v is not None}
        sources = args.particles if len(args.particles) > 1 else args.particles[0]
        result = engine.classify2d(sources, args.output, step=args.step, box=args.box, **options)
        log.info("%s %s: %d classes, %d particles -> %s", result.extra["job_type"], result.extra["job_uid"],
                 len(result.extra["counts"]), sum(result.extra["counts"]), result.model_star)
    elif args.action == "scores":
        job = engine.write_scores(args.classification, args.scores, step=args.step)
        log.info("scores shown in External job %s", job.uid)
    elif args.action == "select":
        results = engine.select_from_summary(args.classification, args.selection, args.output, step=args.step,
                                             method=args.method)
        for name, r in results.items():
            log.info("%s: %s", name, "empty" if r is None else f"{r['n']} particles in {r['ref']}")
    else:
        result = engine.reconstruct_selection(args.particles, args.output, box=args.box, seed=args.seed,
                                              step=args.step)
        summary = {"extract": result["extract"]["job"].uid, "abinit": result["abinit"]["job"].uid,
                   "seed": result["abinit"]["seed"], "map": str(result["abinit"]["map"]),
                   "reconstruct": result["reconstruct"]["job"].uid if result["reconstruct"] else None,
                   "validation": result["validation"]}
        print(json.dumps(summary, indent=2))
