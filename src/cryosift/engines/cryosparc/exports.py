"""Local copies of cryoSPARC results, and the record of where each came from.

Scoring, selection and validation run on files, so every result the pipeline needs is
copied here: particle outputs as ``.cs`` (and RELION ``.star``), class averages as the
``JNN_NNN_class_averages.mrc``/``.cs`` pair plus the RELION Class2D layout, and maps as
``.mrc``. Each export folder holds a ``cryosparc.json`` naming, per file, the project, job
and output it came from; a later step given such a file (or folder) connects that output
on the server instead of uploading anything.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cryosift.engines.cryosparc.graph import CLASS2D_AVERAGES, CLASS2D_PARTICLES, OutputRef
from cryosift.engines.cryosparc.layout import finite_resolution, write_relion_class2d
from cryosift.engines.cryosparc.settings import CryosparcSettings
from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path, write_text_atomic
from cryosift.io.convert import particles_from_dataset
from cryosift.io.jsonfile import read_json
from cryosift.io.cs import write_cs
from cryosift.io.models import ParticleSet
from cryosift.io.mrc import write_stack
from cryosift.io.star import write_particles_star

log = logging.getLogger(__name__)

SIDECAR = "cryosparc.json"
FORMAT = "cryosift-cryosparc"

_ITERATION = re.compile(r"_(\d+)_class_averages\.mrcs?$")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- provenance

def _ref_json(ref):
    if ref is None:
        return None
    if isinstance(ref, (list, tuple)):
        return [_ref_json(r) for r in ref]
    ref = OutputRef.parse(ref)
    return {"job": ref.job, "output": ref.output}


def _refs(entry) -> list[OutputRef]:
    if entry is None:
        return []
    if isinstance(entry, list):
        return [r for e in entry for r in _refs(e)]
    return [OutputRef(entry["job"], entry["output"])]


def read_sidecar(folder: str | Path) -> dict | None:
    """The ``cryosparc.json`` of an export folder, or None when there is none."""
    path = Path(folder) / SIDECAR
    if not path.is_file():
        return None
    record = read_json(path, "a cryoSPARC export record")
    if record.get("format") != FORMAT:
        raise InputError(path, "not a cryosift cryoSPARC export record")
    return record


def write_sidecar(folder: str | Path, s: CryosparcSettings, jobs: dict | None = None, files: dict | None = None,
                  **extra) -> Path:
    """Add jobs (step key -> JobRef), files (name -> OutputRef, list or None) and fields to ``cryosparc.json``."""
    folder = Path(folder)
    record = read_sidecar(folder) or {"format": FORMAT}
    record.update(project_uid=s.project, workspace_uid=s.workspace, run=s.run)
    record.setdefault("jobs", {}).update(
        {key: {"uid": j.uid, "type": j.type, "title": j.title} for key, j in (jobs or {}).items()})
    record.setdefault("files", {}).update({name: _ref_json(ref) for name, ref in (files or {}).items()})
    record.update({k: _ref_json(v) if isinstance(v, OutputRef) else v for k, v in extra.items()})
    path = folder / SIDECAR
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def resolve_sources(particles, project: str) -> list[OutputRef]:
    """The cryoSPARC outputs behind ``particles``.

    Parameters
    ----------
    particles : str, Path, OutputRef or a list of them
        Job outputs (``J12.particles``), files or folders exported by this engine (their
        ``cryosparc.json`` names the output), or classification manifests of such folders.
        An exported empty selection contributes nothing.
    project : str
        The project the engine works in; exports from another project are refused.
    """
    items = particles if isinstance(particles, (list, tuple)) else [particles]
    out: list[OutputRef] = []
    for item in items:
        out += _resolve_one(item, project)
    return out


def _resolve_one(item, project: str) -> list[OutputRef]:
    if isinstance(item, OutputRef):
        return [item]
    if isinstance(item, ParticleSet):
        raise InputError(item.source, "the cryoSPARC engine works on particles on the server: give a job output "
                                      "(J12.particles) or a file this engine exported")
    p = Path(item)
    if not p.exists():
        return [OutputRef.parse(str(item), uid=True)]
    if p.suffix == ".json" and p.name != SIDECAR:
        from cryosift.pipeline.manifest import is_manifest, read_manifest

        if is_manifest(p):
            p = Path(read_manifest(p).job_dir)
    folder, name = (p, None) if p.is_dir() else (p.parent, p.name)
    record = read_sidecar(folder)
    if record is None:
        raise InputError(p, f"not exported from cryoSPARC (no {SIDECAR} beside it); give a job output such as "
                            "J12.particles")
    if record.get("project_uid") != project:
        raise InputError(p, f"exported from project {record.get('project_uid')}, but the engine works in {project}")
    files = record.get("files", {})
    if name is None:
        if "primary" not in record:
            raise InputError(p, f"{SIDECAR} names no particle output for this folder")
        return _refs(record["primary"])
    if name not in files:
        raise InputError(p, f"{SIDECAR} names no cryoSPARC output for {name}")
    return _refs(files[name])


# --------------------------------------------------------------------------- downloads

def download(adapter, project: str, rel_path: str, target: str | Path) -> Path:
    """Copy a project file (path relative to the project folder) to ``target`` atomically."""
    target = Path(target)
    with atomic_path(target) as tmp:
        adapter.download_file(project, rel_path, tmp)
    return target


def read_mrc_images(path: str | Path) -> tuple[np.ndarray, float]:
    """Images of an MRC file as float32 (n, box, box) and the pixel size (Å/px), whatever its header flags."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryoSPARC's stacks are .mrc with a volume header
        with mrcfile.open(path, permissive=True) as mrc:
            if mrc.data is None:
                raise InputError(path, "MRC file holds no data")
            data = np.array(mrc.data, dtype=np.float32)
            pixel_size = float(mrc.voxel_size.x)
    return (data[None] if data.ndim == 2 else data), pixel_size


def localize(ds, project_dir: str | None):
    """A copy of ``ds`` whose relative ``blob/path`` values point into ``project_dir`` (when given)."""
    if not project_dir or "blob/path" not in ds.fields():
        return ds
    out = ds.copy()
    root = Path(project_dir).expanduser()
    out["blob/path"] = np.array([_text(v) if Path(_text(v)).is_absolute() else str(root / _text(v))
                                 for v in ds["blob/path"]], dtype=object)
    return out


def export_particles(adapter, s: CryosparcSettings, ref: OutputRef, path: str | Path, star: bool = True,
                     prefer: str = "3d") -> dict:
    """Copy a particle output to ``path`` (.cs) and, with ``star``, a RELION ``.star`` beside it.

    Returns
    -------
    dict
        ``cs``, ``star`` (or None) and ``n`` (particles).
    """
    path = Path(path)
    ds = localize(adapter.load_output(s.project, ref.job, ref.output), s.project_dir)
    write_cs(path, ds)
    star_path = None
    if star and len(ds):
        star_path = path.with_suffix(".star")
        write_particles_star(star_path, particles_from_dataset(ds, source=path, prefer=prefer))
    return {"cs": path, "star": star_path, "n": len(ds)}


def export_maps(adapter, s: CryosparcSettings, ref: OutputRef, folder: str | Path, names: dict) -> dict:
    """Download the maps of a volume output: ``names`` maps a slot (``map``, ``map_half_A`` ...) to a file name.

    Slots the output lacks are skipped. Returns slot -> local path.
    """
    ds = adapter.load_output(s.project, ref.job, ref.output)
    out = {}
    for slot, name in names.items():
        field = f"{slot}/path"
        if field in ds.fields() and len(ds):
            out[slot] = download(adapter, s.project, _text(ds[field][0]), Path(folder) / name)
    return out


# --------------------------------------------------------------------------- 2D classification

def export_class2d(adapter, s: CryosparcSettings, job_uid: str, job_dir: str | Path) -> dict:
    """Copy a finished 2D classification to ``job_dir`` in both cryoSPARC and RELION form.

    Writes ``JNN_NNN_class_averages.mrc`` and ``.cs``, ``JNN_NNN_particles.cs`` (cryoSPARC's
    own names, so :func:`cryosift.io.read_cryosparc_classes` reads them) and the RELION
    Class2D files of :func:`~cryosift.engines.cryosparc.layout.write_relion_class2d`.

    Returns
    -------
    dict
        ``iteration``, ``model``, ``data``, ``classes``, ``counts``, ``particles_cs``,
        ``class_averages_cs``, ``class_averages_mrc`` and ``pixel_size`` (Å/px).
    """
    job = Path(job_dir)
    job.mkdir(parents=True, exist_ok=True)
    averages = adapter.load_output(s.project, job_uid, CLASS2D_AVERAGES)
    particles = adapter.load_output(s.project, job_uid, CLASS2D_PARTICLES)
    if not len(averages):
        raise InputError(None, f"{s.project} {job_uid} has no class averages")
    averages = averages.take(np.argsort(np.asarray(averages["blob/idx"]), kind="stable"))
    idx = np.asarray(averages["blob/idx"], dtype=np.int64)
    if not np.array_equal(idx, np.arange(len(idx))):
        raise InputError(None, f"{s.project} {job_uid}.class_averages: class indices are not 0..{len(idx) - 1}")
    remote = _text(averages["blob/path"][0])
    m = _ITERATION.search(remote)
    iteration = int(m[1]) if m else 0
    stem = f"{job_uid}_{iteration:03d}"
    raw = download(adapter, s.project, remote, job / f".{stem}_download.mrc")
    try:
        images, header_apix = read_mrc_images(raw)
    finally:
        raw.unlink(missing_ok=True)
    rows = np.asarray(averages["blob/idx"], dtype=np.int64)
    if rows.max() >= len(images):
        raise InputError(None, f"{remote}: {len(images)} images, but class index {int(rows.max())} is recorded")
    images = images[rows]
    pixel_size = float(averages["blob/psize_A"][0]) if "blob/psize_A" in averages.fields() else header_apix
    mrc_path = job / f"{stem}_class_averages.mrc"
    write_stack(mrc_path, images, pixel_size)
    local = averages.copy()
    local["blob/path"] = np.array([mrc_path.name] * len(local), dtype=object)
    local["blob/idx"] = np.arange(len(local))
    if "blob/res_A" in local.fields():
        local["blob/res_A"] = finite_resolution(local["blob/res_A"])
    res = local["blob/res_A"] if "blob/res_A" in local.fields() else np.full(len(local), np.inf)
    ca_path, pa_path = job / f"{stem}_class_averages.cs", job / f"{stem}_particles.cs"
    write_cs(ca_path, local)
    particles = localize(particles, s.project_dir)
    write_cs(pa_path, particles)
    pset = particles_from_dataset(particles, source=pa_path, prefer="2d")
    relion = write_relion_class2d(job, iteration, images, pixel_size, res, pset)
    log.info("exported %s %s: %d classes, %d particles -> %s", s.project, job_uid, len(images), len(particles), job)
    return {"iteration": iteration, **relion, "particles_cs": pa_path, "class_averages_cs": ca_path,
            "class_averages_mrc": mrc_path, "pixel_size": pixel_size}


def class2d_files(job_uid: str, exported: dict) -> dict:
    """File name -> cryoSPARC output of an exported 2D classification (for ``cryosparc.json``)."""
    particles, averages = OutputRef(job_uid, CLASS2D_PARTICLES), OutputRef(job_uid, CLASS2D_AVERAGES)
    return {exported["particles_cs"].name: particles, exported["data"].name: particles,
            exported["class_averages_cs"].name: averages, exported["class_averages_mrc"].name: averages,
            exported["classes"].name: averages, exported["model"].name: averages}
