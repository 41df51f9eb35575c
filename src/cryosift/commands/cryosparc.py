"""Run CryoSift's steps as jobs on a CryoSPARC server (check, plan, classify, select, reconstruct).

Settings come from --config (a YAML/JSON file with a ``cryosparc:`` block, e.g. the workflow's
config.yaml) or CRYOSIFT_CRYOSPARC_CONFIG; the password from a 0600 file or CRYOSPARC_PASSWORD.
``plan`` and ``settings`` need no server: the job graph (types, parameters, connections), and
the checked settings file the workflow's rules share.

Examples::

    cryosift cryosparc check --config config/config.yaml
    cryosift cryosparc plan --config config/config.yaml --box 256 --source J10.particles
    cryosift cryosparc settings --json '{"project": "P3", "workspace": "W2"}' -o results/cryosparc/settings.json
    cryosift cryosparc ingest --dataset apof --source J12 -o results/ingest/apof --config settings.json
    cryosift cryosparc export J12 -o results/classify/apof/round1
    cryosift cryosparc classify select/apof/round1/kept.cs -o results/classify/apof/round2 --classes 50
    cryosift cryosparc scores --classification results/classify/apof/round2 \\
        --scores results/score/apof/round2/scores.csv
    cryosift cryosparc select --classification results/classify/apof/round2 \\
        --selection results/select/apof/round2/selection.json -o results/cryosparc_select/apof/round2
    cryosift cryosparc reconstruct --particles results/cryosparc_select/apof/final/score_le_3.5.cs \\
        -o results/reconstruct/apof/score_le_3.5 --copy-to results/abinit/apof/cutoff3.5
"""

import json
import logging

from cryosift.engines.cryosparc import CryosparcEngine, render_plan
from cryosift.engines.cryosparc import workflow as W
from cryosift.errors import InputError
from cryosift.io.atomic import write_text_atomic
from cryosift.pipeline.manifest import reuse_manifest, write_manifest
from cryosift.pipeline.plan import StepAction, classification_action

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

    st = sub.add_parser("settings", help="check a cryosparc settings block and write it as a JSON file (no server)")
    st.add_argument("--json", dest="block", help="the block as JSON text (default: the --config file's block)")
    st.add_argument("--config", help="YAML/JSON file with a cryosparc: block")
    st.add_argument("-o", "--output", required=True, help="settings file to write (JSON)")

    i = sub.add_parser("ingest", help="dataset.json of a source on the server (and the export of a 2D job)")
    _settings_args(i)
    i.add_argument("--dataset", required=True, help="dataset name")
    i.add_argument("--source", required=True, help="a finished 2D job (J12) or particles (J10.particles)")
    i.add_argument("-o", "--out", required=True, help="ingest folder")
    i.add_argument("--diameter", type=float, help="mask diameter in Å (default: 75%% of the box)")
    i.add_argument("--model", help="atomic model (PDB/mmCIF) for validation")

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
    k.add_argument("--manifest", help="also write this classification manifest (JSON naming the exported files)")
    k.add_argument("--previous", help="manifest of the previous loop round's classification")
    k.add_argument("--previous-selection",
                   help="selection.json of the previous round: when it ended the loop, the previous "
                        "classification is reused (--manifest then names it) and no job is made")

    s = sub.add_parser("scores", help="show CryoSift scores in CryoSPARC (External job)")
    _settings_args(s)
    s.add_argument("--classification", required=True, help="exported classification folder")
    s.add_argument("--scores", required=True, help="its scores.csv or scores.star")
    s.add_argument("--step", help="step name in the job title (default: from --scores' folder)")
    s.add_argument("-o", "--output", help="also write the job's UID and the classification's to this JSON file")

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
    r.add_argument("--copy-to", help="also write abinit.mrc, abinit_particles.star (and the half maps as "
                                     "abinit_half1/2.mrc) here; an empty selection writes an all-zero map")


def _engine(args) -> CryosparcEngine:
    return CryosparcEngine(args.config, project=args.project, workspace=args.workspace, run=args.run)


def main(args):
    if args.action == "settings":
        return _settings(args)
    if args.action == "classify" and classification_action(
            args.manifest, args.previous, args.previous_selection) is StepAction.REUSE:
        reuse_manifest(args.manifest, args.previous)
        log.info("the loop stopped after the previous round: %s reuses %s", args.manifest, args.previous)
        return
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
    elif args.action == "ingest":
        W.ingest_server_source(engine, args.source, args.out, args.dataset, diameter=args.diameter, model=args.model)
    elif args.action == "export":
        result = engine.adopt(args.job, args.output)
        log.info("%s: %d classes (iteration %d) exported to %s", args.job, len(result.extra["counts"]),
                 result.iteration, args.output)
    elif args.action == "classify":
        options = {k: v for k, v in (("classes", args.classes), ("particle_diameter", args.diameter),
                                     ("seed", args.seed)) if v is not None}
        sources = args.particles if len(args.particles) > 1 else args.particles[0]
        result = engine.classify2d(sources, args.output, step=args.step, extraction_box=args.box, **options)
        if args.manifest:
            write_manifest(args.manifest, "cryosparc", result.job_dir)
        log.info("%s %s: %d classes, %d particles -> %s", result.extra["job_type"], result.extra["job_uid"],
                 len(result.extra["counts"]), sum(result.extra["counts"]), result.model_star)
    elif args.action == "scores":
        job = engine.write_scores(args.classification, args.scores, step=args.step)
        if args.output:
            from cryosift.engines.cryosparc.classify import classification_job

            record = {"project": engine.settings.project, "job": job.uid, "title": job.title,
                      "classification": classification_job(args.classification, engine.settings.project)}
            write_text_atomic(args.output, json.dumps(record, indent=2) + "\n")
        log.info("scores shown in External job %s", job.uid)
    elif args.action == "select":
        results = engine.select_from_summary(args.classification, args.selection, args.output, step=args.step,
                                             method=args.method)
        for name, r in results.items():
            log.info("%s: %s", name, "empty" if r is None else f"{r['n']} particles in {r['ref']}")
    else:
        summary = W.reconstruct_cutoff(engine, args.particles, args.output, copy_to=args.copy_to, box=args.box,
                                       seed=args.seed)
        print(json.dumps(summary, indent=2))


def _settings(args):
    if (args.block is None) == (args.config is None):
        raise InputError(None, "give the settings as --json TEXT or --config FILE")
    if args.block is not None:
        try:
            block = json.loads(args.block)
        except json.JSONDecodeError as exc:
            raise InputError(None, f"--json is not valid JSON ({exc})") from None
    else:
        from cryosift.engines.cryosparc.settings import read_config_file

        block = read_config_file(args.config)
        if isinstance(block.get("cryosparc"), dict):
            block = block["cryosparc"]
    record = W.write_settings(block, args.output)
    log.info("cryoSPARC settings for project %s, workspace %s -> %s", record["project"], record["workspace"],
             args.output)
