"""The one writer of a RELION Class2D iteration (``run_itNNN_classes.mrcs``, ``_data.star``,
``_model.star``), used by every engine and by ingest.

``rlnReferenceImage`` names each class average as ``NNNNNN@<stack>`` with the stack named
relative to the project folder (:func:`cryosift.io.models.project_relative`), as RELION
does; the model file is written last, so a folder holding it holds a complete iteration
(the builtin engine adds its optimiser file after it). :func:`cryosift.io.read_class_averages`
and :func:`cryosift.io.star.last_finished_iteration` read the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.io.models import ParticleSet, project_relative
from cryosift.io.mrc import write_stack
from cryosift.io.star import write_particles_star, write_star


def class2d_stem(job_dir: str | Path, iteration: int) -> Path:
    """``job_dir/run_itNNN``: the common start of an iteration's file names."""
    return Path(job_dir) / f"run_it{int(iteration):03d}"


def write_class2d_iteration(job_dir: str | Path, iteration: int, images: np.ndarray, pixel_size: float,
                            particles: ParticleSet | dict, general: dict, classes: pd.DataFrame,
                            more_blocks: dict | None = None) -> dict:
    """Write one iteration of a Class2D job folder: class averages, particles, then the model.

    Parameters
    ----------
    job_dir : str or Path
        The folder (must exist).
    iteration : int
        Iteration number of the file names.
    images : np.ndarray
        Class averages, shape (k, box, box), class i at row i (written with their dtype).
    pixel_size : float
        Å/px of the class averages.
    particles : ParticleSet or dict
        The classified particles (``rlnClassNumber`` 1..k), or the data.star blocks.
    general : dict
        The ``model_general`` labels.
    classes : pd.DataFrame
        The ``model_classes`` columns, one row per class; ``rlnReferenceImage`` is put first.
    more_blocks : dict, optional
        Further model.star blocks (per-class spectra, groups), written after ``model_classes``.

    Returns
    -------
    dict
        Paths ``classes``, ``data`` and ``model``.
    """
    stem = class2d_stem(job_dir, iteration)
    files = {"classes": Path(f"{stem}_classes.mrcs"), "data": Path(f"{stem}_data.star"),
             "model": Path(f"{stem}_model.star")}
    write_stack(files["classes"], images, pixel_size)
    if isinstance(particles, ParticleSet):
        write_particles_star(files["data"], particles)
    else:
        write_star(files["data"], particles)
    ref = project_relative(files["classes"])
    table = classes.copy()
    table.insert(0, "rlnReferenceImage", [f"{i + 1:06d}@{ref}" for i in range(len(table))])
    write_star(files["model"], {"model_general": general, "model_classes": table, **(more_blocks or {})})
    return files
