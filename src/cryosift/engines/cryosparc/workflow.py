"""What the Snakemake workflow asks of the cryoSPARC engine beyond the engine protocol.

- :func:`write_settings`: the workflow's ``cryosparc`` block, checked, as the settings file
  every cryoSPARC rule reads (so changing the block reruns what depends on it);
- :func:`ingest_server_source`: ``dataset.json`` of a dataset whose source is on the server,
  and for a 2D job (``J12``) its export and classification manifest, which round 1 scores;
- :func:`reconstruct_cutoff`: one cutoff's branch on the server, its map and particles
  copied to the names validation reads; a cutoff that kept nothing completes with an
  empty particle file and an all-zero map, as the local engines' branches do.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cryosift.engines.base import ABINIT_HALVES, ABINIT_MAP, ABINIT_PARTICLES
from cryosift.engines.cryosparc.adapter import ENGINE
from cryosift.engines.cryosparc.credentials import ENV_PASSWORD
from cryosift.engines.cryosparc.exports import resolve_sources
from cryosift.engines.cryosparc.graph import CLASS2D_PARTICLES, OutputRef
from cryosift.engines.cryosparc.settings import load_settings
from cryosift.errors import EngineError, InputError
from cryosift.io.atomic import atomic_path, write_text_atomic
from cryosift.records import write_dataset

log = logging.getLogger(__name__)

_JOB = re.compile(r"^J\d+$")

#: Files of a cutoff's branch that validation reads: the engines' common ab initio layout.
MAP, PARTICLES, HALVES = ABINIT_MAP, ABINIT_PARTICLES, ABINIT_HALVES


# --------------------------------------------------------------------------- settings

def settings_record(block) -> dict:
    """The ``cryosparc`` block as the settings file holds it, after the engine's checks.

    Unknown keys, malformed values and a ``password`` key are errors; the project and
    workspace are written as resolved (configuration or environment), so every step of
    a run works in the same place.
    """
    if not isinstance(block, Mapping):
        raise InputError(None, "the cryosparc settings must be a mapping of keys to values")
    block = dict(block)
    if "password" in block:
        raise InputError(None, "cryosparc.password: passwords are not read from configuration files; "
                               f"use password_file (mode 0600) or the {ENV_PASSWORD} environment variable")
    settings = load_settings(block)
    return {**block, "project": settings.project, "workspace": settings.workspace}


def write_settings(block, out: str | Path) -> dict:
    """Check ``block`` (see :func:`settings_record`) and write it to ``out`` as JSON, atomically."""
    record = settings_record(block)
    write_text_atomic(out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


# --------------------------------------------------------------------------- ingest

def ingest_server_source(engine, source: str, out_dir: str | Path, dataset: str, diameter: float | None = None,
                         model: str | None = None) -> dict:
    """Bring a dataset whose source is on the server into the workflow.

    Parameters
    ----------
    engine : CryosparcEngine
        The engine (its settings name the project).
    source : str
        ``J12`` (a finished 2D classification: exported to ``out_dir/Class2D`` with a
        ``classification.json`` manifest, and scored in round 1 as it is) or
        ``J10.particles`` (particles to classify).
    out_dir : str or Path
        The dataset's ingest folder; ``dataset.json`` is written last.
    dataset : str
        Dataset name.
    diameter : float, optional
        Mask diameter in Å (default: 75 % of the particles' box).
    model : str, optional
        Atomic model for validation.

    Returns
    -------
    dict
        The content written to ``dataset.json``.
    """
    from cryosift.pipeline.manifest import write_manifest

    out, s, text = Path(out_dir), engine.settings, str(source).strip()
    out.mkdir(parents=True, exist_ok=True)
    has_classes = bool(_JOB.match(text))
    ref = OutputRef(text, CLASS2D_PARTICLES) if has_classes else OutputRef.parse(text, uid=True)
    if has_classes:
        engine.adopt(text, out / "Class2D")
        write_manifest(out / "classification.json", ENGINE, out / "Class2D")
    blob = engine.adapter.load_output(s.project, ref.job, ref.output, slots=["blob"])
    if not len(blob) or "blob/shape" not in blob.fields() or "blob/psize_A" not in blob.fields():
        raise InputError(None, f"{s.project} {ref} holds no particle images (blob/shape, blob/psize_A)")
    box = int(np.asarray(blob["blob/shape"])[0][-1])
    apix = float(np.round(float(blob["blob/psize_A"][0]), 6))
    facts = {"dataset": dataset, "type": "cryosparc", "source": text, "box": box, "pixel_size": apix,
             "diameter_A": float(diameter or round(0.75 * box * apix, 1)), "n_particles": len(blob),
             "model": model or None, "has_classes": has_classes, "particles": None,
             "cryosparc": {"project": s.project, "workspace": s.workspace, "particles": str(ref),
                           "extraction_box": s.extraction_box}}
    write_dataset(out / "dataset.json", facts)
    log.info("%s: %s %s, %d particles, box %d px, %.3f Å/px%s", dataset, s.project, ref, len(blob), box, apix,
             ", with its classification" if has_classes else "")
    return facts


# --------------------------------------------------------------------------- one cutoff

def reconstruct_cutoff(engine, particles, out_dir: str | Path, copy_to: str | Path | None = None,
                       box: int | None = None, seed: int | None = None) -> dict:
    """One cutoff's branch on the server (re-extraction, ab initio, reconstruction, validation jobs).

    Parameters
    ----------
    engine : CryosparcEngine
        The engine.
    particles : str or Path
        The cutoff's selection exported by ``cryosift cryosparc select`` (or a job output).
    out_dir : str or Path
        Export folder of the branch; its last two parts name the steps (``ds/cutoff3.5``).
    copy_to : str or Path, optional
        Also write ``abinit.mrc``, ``abinit_particles.star`` and, when the reconstruction
        has half maps on the same grid, ``abinit_half1.mrc``/``abinit_half2.mrc`` here.
    box : int, optional
        Full extraction box in px (default: ``cryosparc.extraction_box``).
    seed : int, optional
        Ab initio seed (default: the run's).

    Returns
    -------
    dict
        A summary: job UIDs, seed, map and particle count (``particles`` 0 for an empty selection).
    """
    if not resolve_sources(particles, engine.settings.project):
        if copy_to is None:
            raise InputError(particles, "the selection holds no particles: nothing to reconstruct")
        write_no_particles(particles, copy_to, box or engine.settings.extraction_box)
        return {"particles": 0, "extract": None, "abinit": None, "seed": seed, "map": str(Path(copy_to) / MAP),
                "reconstruct": None, "validation": {}}
    result = engine.reconstruct_selection(particles, out_dir, box=box, seed=seed)
    ab = result["abinit"]
    summary = {"particles": ab["n"], "extract": result["extract"]["job"].uid, "abinit": ab["job"].uid,
               "seed": ab["seed"], "map": str(ab["map"]),
               "reconstruct": result["reconstruct"]["job"].uid if result["reconstruct"] else None,
               "validation": result["validation"]}
    if copy_to is not None:
        copy_branch(result, copy_to)
        summary["map"] = str(Path(copy_to) / MAP)
    return summary


def _grid(path) -> tuple:
    import mrcfile

    with mrcfile.open(path, header_only=True, permissive=True) as mrc:
        return int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)


def _copy(source, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def copy_branch(result: dict, copy_to: str | Path) -> None:
    """Copy a branch's ab initio map and particles (and the reconstruction's half maps) to ``copy_to``.

    The half maps are copied only when they share the ab initio map's grid (validation
    compares them voxel by voxel); stale ones from an earlier run are removed. The map is
    written last.
    """
    out, ab = Path(copy_to), result["abinit"]
    if ab.get("map") is None or ab.get("star") is None:
        raise EngineError(ENGINE, f"copying ab initio job {ab['job'].uid}", None,
                          "the job exported no map or no particles")
    out.mkdir(parents=True, exist_ok=True)
    _copy(ab["star"], out / PARTICLES)
    rec = result.get("reconstruct") or {}
    halves = [rec.get("half1"), rec.get("half2")]
    if all(halves) and all(_grid(h) == _grid(ab["map"]) for h in halves):
        for source, name in zip(halves, HALVES):
            _copy(source, out / name)
    else:
        if all(halves):
            log.warning("half maps of %s are not on the ab initio map's grid; validation uses no half maps",
                        rec["job"].uid)
        for name in HALVES:
            (out / name).unlink(missing_ok=True)
    _copy(ab["map"], out / MAP)


def write_no_particles(particles, copy_to: str | Path, box: int | None = None) -> None:
    """A cutoff that kept nothing: an empty ``abinit_particles.star`` and an all-zero map.

    The optics (and so the map's grid) come from the ``.star`` written beside the empty
    selection, rescaled to the full ``box`` when given; validation then reports
    ``no particles kept``.
    """
    from cryosift.io.convert import read_particles
    from cryosift.reconstruct.abinit import write_empty_abinit

    star = Path(particles).with_suffix(".star")
    if not star.is_file():
        raise InputError(particles, f"an empty selection without {star.name} beside it (its optics); "
                                    "run `cryosift cryosparc select` again")
    pset = read_particles(star)
    old = int(pset.optics["rlnImageSize"].iloc[0])
    if box and int(box) != old:  # the selection's particles may be binned; the branch works at the full box
        pset.optics["rlnImagePixelSize"] = pset.optics["rlnImagePixelSize"].astype(float) * old / int(box)
        pset.optics["rlnImageSize"] = int(box)
    volume = write_empty_abinit(pset, copy_to)
    log.warning("%s holds no particles: no jobs; %s is an empty (all-zero) map", particles, volume)
