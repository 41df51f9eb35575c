"""The cryoSPARC job graph: what each pipeline step makes, and the whole plan without a server.

A :class:`JobSpec` is one job to make (type, title, parameters, input connections); an
:class:`OutputRef` names a job output (``J12.particles``, or in a plan the key of a planned
job). The same spec builders serve the engine at run time and :func:`build_plan`, so the
printed plan is the graph the engine makes (class selections are decided by the scores at
run time, and the loop may stop early).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import cryosift.engines.cryosparc.params as P
from cryosift.engines.cryosparc.refs import OutputRef
from cryosift.engines.cryosparc.settings import CryosparcSettings
from cryosift.errors import InputError
from cryosift.selection.policy import rounds_for_box

# Output names of the cryoSPARC job types used here.
CLASS2D_PARTICLES = "particles"
CLASS2D_AVERAGES = "class_averages"
SELECTED = "particles_selected"
EXCLUDED = "particles_excluded"
EXTRACTED = "particles"
ABINIT_PARTICLES = "particles_class_0"
ABINIT_VOLUME = "volume_class_0"
RECON_PARTICLES = "particles"
RECON_VOLUME = "volume"
SCORED_AVERAGES = "templates_scored"

#: kind of a spec: a job queued as it is, an interactive Select 2D, an External job, or a job that exists.
KINDS = ("job", "select_2D", "external", "existing")

@dataclass
class JobSpec:
    """A job to make.

    Attributes
    ----------
    key : str
        The step, unique within a run (e.g. ``round1/classify2d``); the job title is built from it.
    type : str
        cryoSPARC job type (``snowflake`` for External jobs).
    title : str
        The job's title, by which a rerun finds it.
    kind : str
        One of :data:`KINDS`.
    params : dict
        Parameters to set.
    connections : dict
        Input name -> list of :class:`OutputRef`.
    note : str
        What the step is for (shown in plans).
    """

    key: str
    type: str
    title: str
    kind: str = "job"
    params: dict = field(default_factory=dict)
    connections: dict = field(default_factory=dict)
    note: str = ""

    def connection_tuples(self) -> dict:
        """Input name -> list of (job, output) tuples, as cryosparc-tools takes them."""
        return {name: [(r.job, r.output) for r in refs] for name, refs in self.connections.items()}

    def to_dict(self) -> dict:
        return {"key": self.key, "type": self.type, "title": self.title, "kind": self.kind,
                "params": dict(self.params), "note": self.note,
                "connections": {k: [str(r) for r in v] for k, v in self.connections.items()}}


# --------------------------------------------------------------------------- spec builders

def classify_spec(s: CryosparcSettings, key: str, sources, job_type: str, params: dict) -> JobSpec:
    """2D classification of one or more particle outputs (several are pooled by the job)."""
    refs = [OutputRef.parse(r) for r in sources]
    if not refs:
        raise InputError(None, "2D classification needs at least one particle source")
    return JobSpec(key, job_type, s.title(key), "job", dict(params), {"particles": refs},
                   note=f"2D classification ({len(refs)} particle input{'s' if len(refs) > 1 else ''})")


def select_spec(s: CryosparcSettings, key: str, classification: str, method: str | None = None,
                note: str = "") -> JobSpec:
    """Keep the particles of chosen classes of ``classification`` (a 2D job)."""
    method = method or s.select_method
    particles = OutputRef(classification, CLASS2D_PARTICLES)
    if method == "select_2D":
        return JobSpec(key, "select_2D", s.title(key), "select_2D", {},
                       {"particles": [particles], "templates": [OutputRef(classification, CLASS2D_AVERAGES)]},
                       note=note or "Select 2D: classes chosen by score")
    return JobSpec(key, "snowflake", s.title(key), "external", {}, {"passthrough": [particles]},
                   note=note or f"External job: output {SELECTED} = particles of the classes chosen by score")


def scores_spec(s: CryosparcSettings, key: str, classification: str) -> JobSpec:
    """External job showing a classification's class averages ordered by CryoSift score."""
    return JobSpec(key, "snowflake", s.title(key), "external", {},
                   {"passthrough": [OutputRef(classification, CLASS2D_AVERAGES)]},
                   note=f"External job: output {SCORED_AVERAGES} (best first), scores in the description")


def extract_spec(s: CryosparcSettings, key: str, particles, box: int) -> JobSpec:
    """Re-extraction at the full box from the configured micrographs."""
    if not s.micrographs:
        raise InputError(None, "re-extraction needs cryosparc.micrographs (e.g. [J3.micrographs])")
    conns = {"micrographs": [OutputRef.parse(m) for m in s.micrographs], "particles": [OutputRef.parse(particles)]}
    return JobSpec(key, "extract_micrographs_multi", s.title(key), "job", P.extract_params(box, s.extract_params),
                   conns, note=f"re-extraction at {box} px, unbinned")


def abinit_spec(s: CryosparcSettings, key: str, particles, seed: int) -> JobSpec:
    """Ab initio reconstruction with the paper's settings and the run's seed."""
    return JobSpec(key, "homo_abinit", s.title(key), "job", P.abinit_params(seed, s.seed_param, s.abinit_params),
                   {"particles": [OutputRef.parse(particles)]}, note="ab initio, one class, the run's seed")


def reconstruct_spec(s: CryosparcSettings, key: str, particles) -> JobSpec:
    """Homogeneous reconstruction from the ab initio poses (half maps for FSC and ResLog)."""
    return JobSpec(key, "homo_reconstruct", s.title(key), "job", dict(s.reconstruct_params),
                   {"particles": [OutputRef.parse(particles)]}, note="reconstruction only, half maps")


def validation_specs(s: CryosparcSettings, base: str, jobs: dict) -> list[JobSpec]:
    """The configured validation jobs of one cutoff; ``jobs`` maps step names to job UIDs (or keys)."""
    specs = []
    for entry in s.validation_jobs:
        conns = {}
        for name, refs in (entry.get("connections") or {}).items():
            refs = [refs] if isinstance(refs, str) else list(refs)
            resolved = []
            for text in refs:
                ref = OutputRef.parse(text)
                resolved.append(OutputRef(jobs.get(ref.job, ref.job), ref.output))
            conns[name] = resolved
        key = f"{base}/{entry['key']}"
        specs.append(JobSpec(key, str(entry["type"]), s.title(key), "job", dict(entry.get("params") or {}), conns,
                             note=str(entry.get("note", "validation"))))
    return specs


# --------------------------------------------------------------------------- the whole plan

def build_plan(s: CryosparcSettings, box: int, source: str | None = None, rounds: int | None = None,
               cutoffs=(2.5, 3.5, 4.5), seed: int | None = None, dataset: str = "data") -> list[JobSpec]:
    """Every job of a CryoSift run, in order, with planned jobs referred to by key.

    Parameters
    ----------
    s : CryosparcSettings
        Project, workspace, run name and parameters.
    box : int
        Full extraction box in px (chooses the 2D job type and the number of rounds).
    source : str, optional
        Particles to classify first (``J10.particles``); not needed with a starter job.
    rounds : int, optional
        Loop rounds (default: from the box, as the published pipeline).
    cutoffs : sequence of float
        Final score cutoffs; one re-extraction, ab initio and validation branch each.
    seed : int, optional
        The ab initio seed (default: the configured one; when none is set the run draws one).
    dataset : str
        First part of every step name, as the engine derives it from the workflow's folders
        (``results/classify/<dataset>/round1`` -> ``<dataset>/round1/classify2d``).
    """
    rounds = int(rounds or rounds_for_box(box))
    d = dataset.strip("/")
    job_type, params2d = P.class2d_params(box, overrides=s.classify_params)
    if s.starter_job:
        params2d = {"<copied from>": s.starter_job, **params2d}
    specs: list[JobSpec] = []
    if s.starter_job:
        specs.append(JobSpec(f"{d}/round1/classify2d", "existing", s.starter_job, "existing",
                             note=f"the starter 2D job {s.starter_job} is round 1's classification"))
        previous = s.starter_job
    else:
        if not source:
            raise InputError(None, "a plan needs the first particles (e.g. J10.particles) or cryosparc.starter_job")
        first = classify_spec(s, f"{d}/round1/classify2d", [source], job_type, params2d)
        specs.append(first)
        previous = first.key
    accepted = kept = None
    for r in range(1, rounds + 1):
        specs.append(scores_spec(s, f"{d}/round{r}/scores", previous))
        if r == 1:
            sel = select_spec(s, f"{d}/round1/select_accepted", previous,
                              note="accepted: the best 70% of classes scoring <= 2.5 (leave the loop)")
            specs.append(sel)
            accepted = sel.key
        kept = select_spec(s, f"{d}/round{r}/select_kept", previous,
                           note="kept: classes scoring < 4.5 that were not accepted")
        specs.append(kept)
        if r < rounds:
            nxt = classify_spec(s, f"{d}/round{r + 1}/classify2d", [OutputRef(kept.key, SELECTED)], job_type, params2d)
            nxt.note += "; the loop stops early when a round rejects nothing"
            specs.append(nxt)
            previous = nxt.key
    final = classify_spec(s, f"{d}/final/classify2d", [OutputRef(kept.key, SELECTED), OutputRef(accepted, SELECTED)],
                          job_type, params2d)
    specs += [final, scores_spec(s, f"{d}/final/scores", final.key)]
    seed = s.seed if seed is None else seed
    for c in sorted(float(c) for c in cutoffs):
        base = f"{d}/score_le_{c:g}"
        sel = select_spec(s, f"{d}/final/select_score_le_{c:g}", final.key, note=f"classes scoring <= {c:g}")
        ext = extract_spec(s, f"{base}/extract", OutputRef(sel.key, SELECTED), box)
        ab = abinit_spec(s, f"{base}/abinit", OutputRef(ext.key, EXTRACTED), seed if seed is not None else 0)
        if seed is None:
            ab.params[s.seed_param] = "<one seed per run, drawn by the first ab initio job>"
        specs += [sel, ext, ab]
        jobs = {"extract": ext.key, "abinit": ab.key}
        if s.reconstruct:
            rec = reconstruct_spec(s, f"{base}/reconstruct", OutputRef(ab.key, ABINIT_PARTICLES))
            specs.append(rec)
            jobs["reconstruct"] = rec.key
        specs += validation_specs(s, base, jobs)
    return specs


def render_plan(specs: list[JobSpec], as_json: bool = False) -> str:
    """The plan as readable text (one block per job) or JSON."""
    if as_json:
        return json.dumps([sp.to_dict() for sp in specs], indent=2)
    lines = []
    for sp in specs:
        lines.append(f"{sp.key}: {sp.type}" + (f"  [{sp.kind}]" if sp.kind != "job" else ""))
        if sp.kind != "existing":
            lines.append(f"    title: {sp.title}")
        for name, refs in sp.connections.items():
            lines.append(f"    {name} <- {', '.join(str(r) for r in refs)}")
        for name, value in sp.params.items():
            lines.append(f"    {name} = {value!r}")
        if sp.note:
            lines.append(f"    # {sp.note}")
    return "\n".join(lines)
