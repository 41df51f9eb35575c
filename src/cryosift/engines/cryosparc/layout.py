"""Write a cryoSPARC 2D classification in RELION's Class2D layout (through
:func:`cryosift.io.class2d.write_class2d_iteration`, as every engine does).

``run_itNNN_classes.mrcs`` holds the class averages, ``run_itNNN_data.star`` the particles
with their class (``rlnClassNumber``, 1-based from ``alignments2D/class``), in-plane angle
and offsets, and ``run_itNNN_model.star`` the per-class table (``rlnClassDistribution``
from the particle counts, ``rlnEstimatedResolution`` from ``blob/res_A``). The model file
is written last, so a folder holding it holds a complete iteration, and every file is
written atomically; :func:`cryosift.io.read_class_averages` reads the folder like any
engine's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.class2d import write_class2d_iteration
from cryosift.io.models import NO_RESOLUTION, ParticleSet


def finite_resolution(values) -> np.ndarray:
    """Resolutions in Å as float64, non-finite or non-positive ones replaced by 999 (RELION's 'none')."""
    res = np.asarray(values, dtype=np.float64).copy()
    res[~np.isfinite(res) | (res <= 0)] = NO_RESOLUTION
    return res


def write_relion_class2d(job_dir: str | Path, iteration: int, images: np.ndarray, pixel_size: float,
                         resolution, particles: ParticleSet) -> dict:
    """Write one iteration of a Class2D folder.

    Parameters
    ----------
    job_dir : str or Path
        The folder.
    iteration : int
        Iteration number for the file names (``run_it020_*``).
    images : np.ndarray
        Class averages, float32, shape (k, box, box), class i at row i.
    pixel_size : float
        Å/px of the class averages.
    resolution : array_like
        Estimated resolution per class in Å, shape (k,).
    particles : ParticleSet
        The classified particles with ``rlnClassNumber`` in 1..k.

    Returns
    -------
    dict
        Paths ``model``, ``data``, ``classes`` and ``counts`` (particles per class, int64 (k,)).
    """
    job = Path(job_dir)
    images = np.asarray(images, dtype=np.float32)
    k, box = images.shape[0], images.shape[-1]
    res = finite_resolution(resolution)
    if res.shape != (k,):
        raise InputError(job, f"{k} class averages but {res.shape[0]} resolutions")
    if "rlnClassNumber" not in particles.particles:
        raise InputError(particles.source, "particles without classes (alignments2D/class)")
    cls = particles.particles["rlnClassNumber"].to_numpy(np.int64)
    if len(cls) and (cls.min() < 1 or cls.max() > k):
        raise InputError(particles.source, f"particles in class {int(cls.max())}, but there are {k} class averages")
    counts = np.bincount(cls - 1, minlength=k).astype(np.int64) if len(cls) else np.zeros(k, np.int64)
    general = {
        "rlnReferenceDimensionality": 2, "rlnDataDimensionality": 2, "rlnOriginalImageSize": int(box),
        "rlnCurrentImageSize": int(box), "rlnPixelSize": float(pixel_size), "rlnNrClasses": int(k),
        "rlnNrBodies": 1, "rlnNrGroups": 1,
    }
    table = pd.DataFrame({
        "rlnClassDistribution": counts / max(int(counts.sum()), 1),
        "rlnAccuracyRotations": np.full(k, NO_RESOLUTION),
        "rlnAccuracyTranslationsAngst": np.full(k, NO_RESOLUTION),
        "rlnEstimatedResolution": res,
        "rlnOverallFourierCompleteness": np.zeros(k),
        "rlnClassPriorOffsetX": np.zeros(k),
        "rlnClassPriorOffsetY": np.zeros(k),
    })
    files = write_class2d_iteration(job, iteration, images, pixel_size, particles, general, table)
    return {**files, "counts": counts}
