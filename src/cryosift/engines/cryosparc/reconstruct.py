"""The 3D steps on the server: re-extraction, ab initio, reconstruction and validation jobs.

Per score cutoff the selected particles are re-extracted at the full box
(``extract_micrographs_multi``), reconstructed ab initio (``homo_abinit``) with the run's
one seed, and, when enabled, reconstructed again from those poses with half maps
(``homo_reconstruct``, as the paper did for ResLog); configured validation jobs follow.
Maps and particles are exported for local validation.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from cryosift.engines.base import (
    ABINIT_MAP,
    ABINIT_PARTICLES,
    EXTRACTED_PARTICLES,
    RECONSTRUCTION_HALVES,
    RECONSTRUCTION_MAP,
)
from cryosift.engines.cryosparc.exports import export_maps, export_particles, write_sidecar
from cryosift.engines.cryosparc.graph import (
    ABINIT_PARTICLES,
    ABINIT_VOLUME,
    EXTRACTED,
    RECON_PARTICLES,
    RECON_VOLUME,
    OutputRef,
    abinit_spec,
    extract_spec,
    reconstruct_spec,
    validation_specs,
)
from cryosift.engines.cryosparc.runner import JobRunner
from cryosift.errors import InputError

log = logging.getLogger(__name__)

#: Ab initio options of the engine protocol (and the workflow's abinit block) -> cryoSPARC parameters.
ABINIT_OPTIONS = {
    "classes": "abinit_K",
    "symmetry": "abinit_symmetry",
    "initial_resolution": "abinit_init_res",
    "final_resolution": "abinit_max_res",
    "minibatch_initial": "abinit_minisize_init",
    "minibatch_final": "abinit_minisize",
}


def run_seed(runner: JobRunner, given: int | None = None) -> int:
    """The ab initio seed of the run: given, configured, the one an earlier ab initio job of this
    run used (found by the run's tag), or a new random one."""
    s = runner.s
    if given is not None:
        return int(given)
    if s.seed is not None:
        return int(s.seed)
    earlier = runner.adapter.find_jobs(s.project, s.workspace, tag=s.tag, type="homo_abinit")
    seeds = sorted({int(j.params[s.seed_param]) for j in earlier if j.params.get(s.seed_param) is not None})
    if len(seeds) > 1:
        log.warning("ab initio jobs of run %s used several seeds %s; using %d", s.run, seeds, seeds[0])
    if seeds:
        return seeds[0]
    seed = secrets.randbelow(2**31 - 2) + 1
    log.info("run %s: ab initio seed %d (drawn now; later cutoffs reuse it)", s.run, seed)
    return seed


def extract(runner: JobRunner, source: OutputRef, job_dir: str | Path, key: str, box: int | None = None) -> dict:
    """Re-extract ``source`` at the full box; export ``particles.cs``/``.star`` (the common layout)."""
    s, job_dir = runner.s, Path(job_dir)
    box = box or s.extraction_box
    if not box:
        raise InputError(None, "re-extraction needs the full box: set cryosparc.extraction_box or give --box")
    spec = extract_spec(s, key, source, int(box))
    job = runner.run(spec)
    ref = OutputRef(job.uid, EXTRACTED)
    cs = (job_dir / EXTRACTED_PARTICLES).with_suffix(".cs")
    out = export_particles(runner.adapter, s, ref, cs)
    write_sidecar(job_dir, s, {key: job}, {cs.name: ref, **({out["star"].name: ref} if out["star"] else {})},
                  primary=ref)
    return {"job": job, "ref": ref, **out}


def abinit(runner: JobRunner, source: OutputRef, job_dir: str | Path, key: str, seed: int | None = None,
           options: dict | None = None) -> dict:
    """Ab initio reconstruction of ``source``; exports ``abinit.mrc`` and ``abinit_particles.cs``/``.star``
    (the engines' common layout)."""
    s, job_dir = runner.s, Path(job_dir)
    seed = run_seed(runner, seed)
    spec = abinit_spec(s, key, source, seed)
    for name, value in (options or {}).items():
        if name in ABINIT_OPTIONS and value is not None:
            spec.params[ABINIT_OPTIONS[name]] = value
        elif value is not None:
            log.warning("ab initio option %s has no cryoSPARC counterpart; ignored", name)
    spec.params.update(s.abinit_params)  # the configuration has the last word
    job = runner.run(spec)
    ref = OutputRef(job.uid, ABINIT_PARTICLES)
    cs = (job_dir / ABINIT_PARTICLES).with_suffix(".cs")
    out = export_particles(runner.adapter, s, ref, cs)
    maps = export_maps(runner.adapter, s, OutputRef(job.uid, ABINIT_VOLUME), job_dir, {"map": ABINIT_MAP})
    files = {cs.name: ref, ABINIT_MAP: OutputRef(job.uid, ABINIT_VOLUME)}
    if out["star"]:
        files[out["star"].name] = ref
    write_sidecar(job_dir, s, {key: job}, files, primary=ref, seed=seed)
    return {"job": job, "ref": ref, "seed": seed, "map": maps.get("map"), **out}


def reconstruct(runner: JobRunner, source: OutputRef, job_dir: str | Path, key: str) -> dict:
    """Reconstruction from known poses with half maps; exports ``reconstruction.mrc``,
    ``reconstruction_half1.mrc`` and ``reconstruction_half2.mrc`` (the engines' common layout)."""
    s, job_dir = runner.s, Path(job_dir)
    spec = reconstruct_spec(s, key, source)
    job = runner.run(spec)
    volume = OutputRef(job.uid, RECON_VOLUME)
    maps = export_maps(runner.adapter, s, volume, job_dir,
                       {"map": RECONSTRUCTION_MAP, "map_half_A": RECONSTRUCTION_HALVES[0],
                        "map_half_B": RECONSTRUCTION_HALVES[1]})
    out = {{"map": "full", "map_half_A": "half1", "map_half_B": "half2"}[k]: v for k, v in maps.items()}
    write_sidecar(job_dir, s, {key: job}, {p.name: volume for p in maps.values()},
                  primary=OutputRef(job.uid, RECON_PARTICLES))
    return {"job": job, **out}


def validation(runner: JobRunner, base: str, jobs: dict, job_dir: str | Path) -> dict:
    """Run the configured validation jobs of one cutoff; ``jobs`` maps step names to job UIDs."""
    done = {}
    for spec in validation_specs(runner.s, base, jobs):
        done[spec.key] = runner.run(spec)
    if done:
        write_sidecar(job_dir, runner.s, done)
    return {k: j.uid for k, j in done.items()}


def reconstruct_selection(runner: JobRunner, source: OutputRef, job_dir: str | Path, base: str,
                          box: int | None = None, seed: int | None = None, options: dict | None = None) -> dict:
    """The whole per-cutoff branch: re-extraction, ab initio, reconstruction, validation jobs.

    Parameters
    ----------
    source : OutputRef
        The selected particles of one cutoff.
    job_dir : str or Path
        Folder for ``extract/``, ``abinit/`` and ``reconstruct/`` exports.
    base : str
        Step name of the branch (keys ``<base>/extract``, ``<base>/abinit`` ...).
    box : int, optional
        Full box in px (default: configured).
    seed : int, optional
        Ab initio seed (default: the run's).

    Returns
    -------
    dict
        ``extract``, ``abinit``, ``reconstruct`` (results of each step) and ``validation`` (key -> UID).
    """
    job_dir = Path(job_dir)
    ext = extract(runner, source, job_dir / "extract", f"{base}/extract", box)
    ab = abinit(runner, ext["ref"], job_dir / "abinit", f"{base}/abinit", seed, options)
    jobs = {"extract": ext["job"].uid, "abinit": ab["job"].uid}
    result = {"extract": ext, "abinit": ab, "reconstruct": None}
    if runner.s.reconstruct:
        rec = reconstruct(runner, ab["ref"], job_dir / "reconstruct", f"{base}/reconstruct")
        jobs["reconstruct"] = rec["job"].uid
        result["reconstruct"] = rec
    result["validation"] = validation(runner, base, jobs, job_dir)
    write_sidecar(job_dir, runner.s, primary=ab["ref"], seed=ab["seed"],
                  branch={k: v for k, v in jobs.items()})
    return result
