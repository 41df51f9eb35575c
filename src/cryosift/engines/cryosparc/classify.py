"""The 2D steps on the server: classification, class selection, and scores written back.

Each function takes a :class:`~cryosift.engines.cryosparc.runner.JobRunner` (the server
through its adapter, plus the run's settings), makes or finds its job, and exports what
the following local steps read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cryosift.engines.base import Class2DResult
import cryosift.engines.cryosparc.params as P
from cryosift.engines.cryosparc.adapter import ENGINE, JobRef
from cryosift.engines.cryosparc.exports import (
    class2d_files,
    export_class2d,
    export_particles,
    read_sidecar,
    write_sidecar,
)
from cryosift.engines.cryosparc.graph import (
    CLASS2D_AVERAGES,
    CLASS2D_PARTICLES,
    SCORED_AVERAGES,
    SELECTED,
    OutputRef,
    classify_spec,
    scores_spec,
    select_spec,
)
from cryosift.engines.cryosparc.runner import JobRunner
from cryosift.errors import EngineError, InputError

log = logging.getLogger(__name__)


def extraction_box(runner: JobRunner, source: OutputRef, given: int | None = None) -> int:
    """The full extraction box (px) for the 2D job type: given, configured, the source job's
    ``box_size_pix``, or (with a warning) the particles' own box."""
    s = runner.s
    if given or s.extraction_box:
        return int(given or s.extraction_box)
    job = runner.adapter.job(s.project, source.job)
    if job.params.get("box_size_pix"):
        return int(job.params["box_size_pix"])
    ds = runner.adapter.load_output(s.project, source.job, source.output, slots=["blob"])
    if "blob/shape" not in ds.fields() or not len(ds):
        raise InputError(None, f"cannot tell the extraction box of {source}: set cryosparc.extraction_box")
    box = int(np.asarray(ds["blob/shape"])[0][-1])
    log.warning("extraction box taken from the particles of %s (%d px); set cryosparc.extraction_box if they "
                "were binned", source, box)
    return box


def _result(job_dir: Path, exported: dict, job: JobRef, params: dict, job_type: str) -> Class2DResult:
    return Class2DResult(
        ENGINE, job_dir, exported["iteration"], exported["model"], exported["data"], exported["classes"],
        extra={"project_uid": job.project_uid, "job_uid": job.uid, "job_type": job_type, "params": params,
               "particles_cs": exported["particles_cs"], "class_averages_cs": exported["class_averages_cs"],
               "counts": exported["counts"].tolist(), "cryosparc_json": job_dir / "cryosparc.json"})


def classify2d(runner: JobRunner, sources: list[OutputRef], job_dir: str | Path, step: str,
               common: dict | None = None, box: int | None = None) -> Class2DResult:
    """2D classification of ``sources`` (several are pooled), exported to ``job_dir``.

    Parameters
    ----------
    runner : JobRunner
        The server and the run's settings.
    sources : list of OutputRef
        Particle outputs.
    job_dir : str or Path
        Export folder (RELION Class2D layout plus the cryoSPARC files).
    step : str
        Step name; the job's key is ``<step>/classify2d``.
    common : dict, optional
        Engine-protocol options (classes, particle_diameter, seed, ...).
    box : int, optional
        Full extraction box in px (default: configured, or read from the source).
    """
    s, job_dir = runner.s, Path(job_dir)
    if not sources:
        raise InputError(None, "nothing to classify: every particle source is empty")
    box = extraction_box(runner, sources[0], box)
    starter, starter_type = None, None
    if s.starter_job:
        ref = runner.adapter.job(s.project, s.starter_job)
        starter, starter_type = ref.params, ref.type
    job_type, params = P.class2d_params(box, starter, starter_type, common, s.classify_params)
    spec = classify_spec(s, f"{step}/classify2d", sources, job_type, params)
    job = runner.run(spec)
    exported = export_class2d(runner.adapter, s, job.uid, job_dir)
    write_sidecar(job_dir, s, {spec.key: job}, class2d_files(job.uid, exported), classification=job.uid,
                  primary=OutputRef(job.uid, CLASS2D_PARTICLES), box=box)
    return _result(job_dir, exported, job, params, job_type)


def adopt_classification(runner: JobRunner, job_uid: str, job_dir: str | Path) -> Class2DResult:
    """Export an existing 2D job (e.g. the user's starter job as round 1) without making any job."""
    s, job_dir = runner.s, Path(job_dir)
    job = runner.adapter.job(s.project, job_uid)
    if not job.type.startswith("class_2D"):
        raise InputError(None, f"{s.project} {job_uid} is a {job.type} job, not a 2D classification")
    if job.status != "completed":
        raise InputError(None, f"{s.project} {job_uid} is {job.status}, not completed")
    exported = export_class2d(runner.adapter, s, job.uid, job_dir)
    write_sidecar(job_dir, s, {"adopted": job}, class2d_files(job.uid, exported), classification=job.uid,
                  primary=OutputRef(job.uid, CLASS2D_PARTICLES))
    return _result(job_dir, exported, job, job.params, job.type)


def classification_job(classification: str | Path, project: str) -> str:
    """The 2D job UID behind an exported classification folder (or its manifest)."""
    p = Path(classification)
    if p.suffix == ".json" and p.is_file():
        from cryosift.pipeline.manifest import is_manifest, read_manifest

        if is_manifest(p):
            p = Path(read_manifest(p).job_dir)
    record = read_sidecar(p if p.is_dir() else p.parent)
    if record is None or "classification" not in record:
        raise InputError(p, "not a 2D classification exported by the cryoSPARC engine (no cryosparc.json)")
    if record["project_uid"] != project:
        raise InputError(p, f"exported from project {record['project_uid']}, but the engine works in {project}")
    return record["classification"]


def select_classes(runner: JobRunner, job_uid: str, classes, out: str | Path, key: str,
                   method: str | None = None) -> dict:
    """Keep the particles of ``classes`` (1-based) of the 2D job ``job_uid`` on the server; export them.

    With ``select_2D`` an interactive Select 2D job is run; with ``external`` the kept rows
    of the job's particles are saved as output ``particles_selected`` of an External job.
    A selection found from an earlier run must keep exactly these classes.

    Returns
    -------
    dict
        ``job`` (JobRef), ``ref`` (the selected output), ``n`` (particles), ``cs`` and ``star`` paths.
    """
    s, out = runner.s, Path(out)
    method = method or s.select_method
    chosen = sorted({int(c) - 1 for c in classes})
    spec = select_spec(s, key, job_uid, method)
    parent = runner.adapter.load_output(s.project, job_uid, CLASS2D_PARTICLES, slots=["alignments2D"])
    parent_classes = np.asarray(parent["alignments2D/class"], dtype=np.int64)
    expected = int(np.isin(parent_classes, chosen).sum())
    if method == "select_2D":
        job = runner.run_select(spec, chosen)
    else:
        subset = parent.mask(np.isin(parent_classes, chosen))
        job = runner.save_external(spec, subset, "particle", SELECTED, ["alignments2D"], (job_uid, CLASS2D_PARTICLES),
                                   description=f"Particles of classes {', '.join(str(c + 1) for c in chosen)} "
                                               f"of {job_uid}, chosen by CryoSift scores.")
    ref = OutputRef(job.uid, SELECTED)
    exported = export_particles(runner.adapter, s, ref, out, prefer="2d")
    got = set()
    if exported["n"]:
        kept = runner.adapter.load_output(s.project, ref.job, ref.output, slots=["alignments2D"])
        got = set(np.unique(np.asarray(kept["alignments2D/class"], dtype=np.int64)).tolist())
    if exported["n"] != expected or not got <= set(chosen):
        raise EngineError(ENGINE, f"checking the selection {job.uid} ({key})", None,
                          f"it holds {exported['n']} particles of classes {sorted(c + 1 for c in got)}, but this step "
                          f"keeps {expected} particles of classes {[c + 1 for c in chosen]}; delete {job.uid} in "
                          "CryoSPARC (an earlier run chose differently) and run again")
    files = {out.name: ref}
    if exported["star"]:
        files[exported["star"].name] = ref
    write_sidecar(out.parent, s, {key: job}, files)
    return {"job": job, "ref": ref, **exported}


def write_empty_selection(runner: JobRunner, job_uid: str, out: str | Path) -> Path:
    """Write an empty particle file for a subset without classes (no job is made; pooling skips it).

    A ``.star`` beside it keeps the optics of the classification's particles (box, pixel
    size), so a cutoff that kept nothing can still write a map of the right grid.
    """
    from cryosift.io.convert import particles_from_dataset
    from cryosift.io.cs import write_cs
    from cryosift.io.star import write_particles_star

    s, out = runner.s, Path(out)
    parent = runner.adapter.load_output(s.project, job_uid, CLASS2D_PARTICLES)
    write_cs(out, parent.mask(np.zeros(len(parent), dtype=bool)))
    files = {out.name: None}
    if len(parent):  # optics come from one row; the set written has none
        none = particles_from_dataset(parent.take(np.array([0])), source=out, prefer="2d").subset(np.arange(0))
        write_particles_star(out.with_suffix(".star"), none)
        files[out.with_suffix(".star").name] = None
    write_sidecar(out.parent, s, files=files)
    return out


def write_scores(runner: JobRunner, job_uid: str, table, key: str) -> JobRef:
    """Show a classification's scores in CryoSPARC: an External job whose output holds its class
    averages ordered best first, with the score table in the job's description.

    Parameters
    ----------
    table : pd.DataFrame
        One row per class: ``class`` (1-based) and ``score`` (lower is better).
    """
    s = runner.s
    averages = runner.adapter.load_output(s.project, job_uid, CLASS2D_AVERAGES, slots=["blob"])
    idx = np.asarray(averages["blob/idx"], dtype=np.int64)
    scores = dict(zip(table["class"].to_numpy(np.int64) - 1, table["score"].to_numpy(np.float64)))
    missing = sorted(set(idx.tolist()) - set(scores))
    if missing:
        raise InputError(None, f"no score for class {missing[0] + 1} of {job_uid}")
    order = np.lexsort((idx, np.array([scores[i] for i in idx])))
    lines = ["CryoSift scores (1 best ... 5 unusable), best first:", "",
             "| class | score |", "|---:|---:|"]
    lines += [f"| {int(idx[i]) + 1} | {scores[int(idx[i])]:.3f} |" for i in order]
    spec = scores_spec(s, key, job_uid)
    return runner.save_external(spec, averages.take(order), "template", SCORED_AVERAGES, ["blob"],
                                (job_uid, CLASS2D_AVERAGES), description="\n".join(lines))
