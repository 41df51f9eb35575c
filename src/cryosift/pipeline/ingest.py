"""Bring a dataset into the workflow: one particle STAR file, its facts, and any classification.

Every dataset, whatever its source, leaves ingest as

- ``particles.star``: RELION 3.1, image names relative to the project folder (the
  workflow's working folder) as RELION writes them;
- ``dataset.json``: box (px), pixel size (Å/px), mask diameter (Å), particle count, atomic
  model and, for simulated data, the true map and ground truth;
- ``classification.json`` when the source is a finished 2D classification, so round 1
  scores it instead of classifying again (cryoSPARC classifications are laid out as a
  RELION Class2D folder first, so every later stage reads one format).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.class2d import write_class2d_iteration
from cryosift.io.classes import find_cryosparc_class_files, read_cryosparc_classes
from cryosift.io.convert import read_particles, read_particles_cs
from cryosift.io.images import check_particle_images
from cryosift.io.jsonfile import read_json
from cryosift.io.models import NO_RESOLUTION, ParticleSet, project_relative, project_relative_image_names
from cryosift.io.star import class2d_iteration_files, last_finished_iteration, write_particles_star
from cryosift.pipeline.datasets import describe_source
from cryosift.pipeline.manifest import write_manifest
from cryosift.records import write_dataset


def relocate(pset: ParticleSet) -> ParticleSet:
    """A copy whose image names resolve from the working folder (checked to exist)."""
    index, paths = pset.image_locations()
    missing = sorted({str(p) for p in paths if not Path(p).exists()})
    if missing:
        raise InputError(pset.source, f"image stack {missing[0]} not found")
    out = pset.subset(np.arange(len(pset)))
    out.particles["rlnImageName"] = project_relative_image_names(pset)
    if "rlnImageSize" not in out.optics:
        out.optics["rlnImageSize"] = pset.box
    if "rlnImageDimensionality" not in out.optics:
        out.optics["rlnImageDimensionality"] = 2
    return out


def _cryosparc_as_class2d(source: Path, job_dir: Path) -> Path:
    """Lay a cryoSPARC 2D classification out as a RELION Class2D folder (iteration 0)."""
    if source.is_dir():
        averages_cs, particles_cs = find_cryosparc_class_files(source)
    else:
        averages_cs = source
        particles_cs = source.with_name(source.name.replace("_class_averages.cs", "_particles.cs"))
    averages = read_cryosparc_classes(averages_cs, particles_cs)
    pset = relocate(read_particles_cs(particles_cs, prefer="2d"))
    k = int(averages.class_numbers.max())
    images = np.zeros((k,) + averages.images.shape[1:], np.float32)
    images[averages.class_numbers - 1] = averages.images
    resolution = np.full(k, NO_RESOLUTION)
    resolution[averages.class_numbers - 1] = averages.resolution
    distribution = np.zeros(k)
    distribution[averages.class_numbers - 1] = averages.distribution
    job_dir.mkdir(parents=True, exist_ok=True)
    classes = pd.DataFrame({"rlnClassDistribution": distribution, "rlnEstimatedResolution": resolution})
    general = {"rlnPixelSize": averages.pixel_size, "rlnNrClasses": k, "rlnOriginalImageSize": averages.box}
    write_class2d_iteration(job_dir, 0, images, averages.pixel_size, pset, general, classes)
    return job_dir


def ingest(kind: str, source: str | Path, out_dir: str | Path, dataset: str, diameter: float | None = None,
           model: str | None = None, pixel_size: float | None = None) -> dict:
    """Ingest one dataset into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    kind : {"simulated", "relion", "cryosparc"}
        Dataset type from the sheet.
    source : str or Path
        For ``simulated``, the simulator's output folder; otherwise the sheet's source.
    diameter : float, optional
        Mask diameter in Å; default: the simulator's, else 75 % of the box.
    model : str, optional
        Atomic model (PDB/mmCIF) for validation; simulated data bring their own.
    pixel_size : float, optional
        Å/px for RELION 3.0 files that do not record it.

    Returns
    -------
    dict
        The content written to dataset.json.
    """
    out = Path(out_dir)
    src = Path(source)
    facts = {"dataset": dataset, "type": kind, "source": str(source)}
    manifest_job = None
    if kind == "simulated":
        info_path = src / "dataset.json"
        if not info_path.exists():
            raise InputError(src, "no dataset.json: not a simulator output folder")
        sim = read_json(info_path, "a simulation's dataset.json")
        pset = read_particles(src / sim["files"]["particles_star"])
        diameter = diameter or sim["diameter_A"]
        model = model or project_relative(src / sim["files"]["model_cif"])
        facts.update(truth_map=project_relative(src / sim["files"]["map_mrc"]),
                     ground_truth=project_relative(src / sim["files"]["ground_truth_csv"]),
                     n_true=sim["n_true"], seed=sim["seed"])
    else:
        described = describe_source(kind, str(source), where=dataset)
        if described.on_server:
            raise InputError(dataset, f"{source} is a job on the CryoSPARC server: bring it in with "
                                      "`cryosift cryosparc ingest`")
        if kind == "relion" and described.has_classes:
            data = last_finished_iteration(src)["data"] if src.is_dir() else class2d_iteration_files(src)["data"]
            pset = read_particles(data, pixel_size=pixel_size)
            manifest_job = src if src.is_dir() else src.parent
        elif kind == "cryosparc" and described.has_classes:
            out.mkdir(parents=True, exist_ok=True)
            manifest_job = _cryosparc_as_class2d(src, out / "Class2D")
            pset = read_particles(last_finished_iteration(manifest_job)["data"])
        else:
            pset = read_particles(src, pixel_size=pixel_size)
    pset = relocate(pset)
    box = pset.box
    apix = pset.common_pixel_size()
    # Every image is read once here, so a truncated stack or a NaN pixel stops the run at its
    # first step, with nothing written, rather than hours later inside classification.
    check_particle_images(pset)
    out.mkdir(parents=True, exist_ok=True)
    write_particles_star(out / "particles.star", pset)
    if manifest_job is not None:
        write_manifest(out / "classification.json", "input", manifest_job)
    facts.update(box=box, pixel_size=apix, diameter_A=float(diameter or round(0.75 * box * apix, 1)),
                 n_particles=len(pset), model=model, has_classes=manifest_job is not None,
                 particles=project_relative(out / "particles.star"))
    write_dataset(out / "dataset.json", facts)
    return facts
