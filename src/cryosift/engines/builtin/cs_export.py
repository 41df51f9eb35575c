"""cryoSPARC .cs export of a finished classification: particles with 2D alignments, class averages.

``run_itNNN_particles.cs`` carries ``alignments2D/class`` (0-based), ``pose`` (in-plane angle,
radians), ``shift`` (px of the particle images) and ``class_posterior``, converted by
:func:`cryosift.io.dataset_from_particles`; ``run_itNNN_class_averages.cs`` points at the
class-average stack with ``blob/res_A`` per class, as cryoSPARC's 2D jobs do, so
:func:`cryosift.io.read_cryosparc_classes` reads the pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cryosparc.dataset import Dataset

from cryosift.io.convert import dataset_from_particles
from cryosift.io.cs import write_cs
from cryosift.io.models import ParticleSet


def class_averages_dataset(classes_path: str, box: int, pixel_size: float, resolution: np.ndarray, seed: int = 0) -> Dataset:
    """A class_averages Dataset: one row per class, ``blob/idx`` = class index (0-based).

    Parameters
    ----------
    classes_path : str
        The class-average stack as it should be recorded (project-relative).
    box : int
        px.
    pixel_size : float
        Å/px.
    resolution : np.ndarray
        Å per class, shape (K,).
    """
    k = len(resolution)
    ds = Dataset.allocate(k, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
                              ("blob/psize_A", "f4"), ("blob/sign", "f4"), ("blob/res_A", "f4")])
    ds["uid"] = np.random.default_rng(seed).integers(1, 2**63 - 1, size=k, dtype=np.int64).astype(np.uint64)
    ds["blob/path"] = np.array([classes_path] * k, dtype=object)
    ds["blob/idx"] = np.arange(k)
    ds["blob/shape"] = np.tile(np.array([box, box]), (k, 1))
    ds["blob/psize_A"] = pixel_size
    ds["blob/sign"] = 1.0
    ds["blob/res_A"] = np.asarray(resolution, dtype=np.float64)
    return ds


def export_cs(stem: Path, particles: ParticleSet, classes_path: str, box: int, pixel_size: float,
              resolution: np.ndarray, seed: int = 0) -> dict:
    """Write ``<stem>_particles.cs`` and ``<stem>_class_averages.cs``.

    Parameters
    ----------
    stem : Path
        e.g. ``job/run_it020``.
    particles : ParticleSet
        The classified particles (as in the iteration's data.star).

    Returns
    -------
    dict
        Paths ``particles_cs`` and ``class_averages_cs``.
    """
    out = {"particles_cs": Path(f"{stem}_particles.cs"), "class_averages_cs": Path(f"{stem}_class_averages.cs")}
    write_cs(out["particles_cs"], dataset_from_particles(particles, alignments="2d", seed=seed))
    write_cs(out["class_averages_cs"], class_averages_dataset(classes_path, box, pixel_size, resolution, seed))
    return out
