"""Read 2D class averages with their per-class numbers from RELION or cryoSPARC output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io.cs import read_cs
from cryosift.io.models import ClassAverages, resolve_image_path, split_image_names
from cryosift.io.mrc import read_stack
from cryosift.io.star import last_finished_iteration, read_class2d_model, read_star


def read_relion_classes(path: str | Path) -> ClassAverages:
    """Class averages of a RELION Class2D job.

    Parameters
    ----------
    path : str or Path
        The job folder (its last finished iteration is used) or a ``run_itNNN_model.star``;
        the matching ``_data.star`` gives particle counts when present.

    Raises
    ------
    InputError
        No finished iteration, missing blocks, or class and particle counts that disagree.
    """
    p = Path(path)
    if p.is_dir():
        files = last_finished_iteration(p)
        model, data = files["model"], files["data"]
    else:
        model = require_file(p)
        data = model.with_name(model.name.replace("_model.star", "_data.star"))
    general, classes = read_class2d_model(model)
    k = len(classes)
    pixel_size = float(general.get("rlnPixelSize", 0) or 0)
    index, stacks = split_image_names(classes["rlnReferenceImage"])
    stack = resolve_image_path(stacks[0], [model.parent.resolve()])
    if not stack.exists():
        stack = model.with_name(Path(stacks[0]).name)
    images, header_apix = read_stack(stack, index)
    if pixel_size <= 0:
        pixel_size = header_apix
    if pixel_size <= 0:
        raise InputError(model, "no pixel size in model_general (rlnPixelSize) nor in the class stack header")
    counts = np.zeros(k, dtype=np.int64)
    if data.exists():
        blocks = read_star(data)
        table = blocks.get("particles")
        if not isinstance(table, pd.DataFrame):
            table = next((v for v in blocks.values() if isinstance(v, pd.DataFrame) and "rlnClassNumber" in v), None)
        if table is None or "rlnClassNumber" not in table:
            raise InputError(data, "no rlnClassNumber column in the particle table")
        cls = table["rlnClassNumber"].to_numpy(np.int64)
        if cls.min() < 1 or cls.max() > k:
            raise InputError(data, f"particles assigned to class {int(cls.max())}, but {model.name} has {k} classes")
        counts = np.bincount(cls - 1, minlength=k)
    return ClassAverages(
        images=images,
        pixel_size=pixel_size,
        class_numbers=np.arange(1, k + 1),
        resolution=classes["rlnEstimatedResolution"].to_numpy(np.float64),
        distribution=classes["rlnClassDistribution"].to_numpy(np.float64),
        particle_count=counts,
        source=model,
        engine="relion",
    )


_CS_ITER = re.compile(r"^(?P<job>J\d+)_(?P<it>\d+)_class_averages\.cs$")


def find_cryosparc_class_files(job_dir: str | Path) -> tuple[Path, Path]:
    """The last iteration's ``*_class_averages.cs`` and ``*_particles.cs`` of a cryoSPARC 2D job folder."""
    job = Path(job_dir)
    found = sorted(((int(m["it"]), f) for f in job.glob("*_class_averages.cs") if (m := _CS_ITER.match(f.name))),
                   reverse=True)
    for it, averages in found:
        particles = averages.with_name(averages.name.replace("_class_averages.cs", "_particles.cs"))
        mrc = averages.with_suffix(".mrc")
        if particles.exists() and mrc.exists():
            return averages, particles
    raise InputError(job, "no finished cryoSPARC 2D iteration (JNN_NNN_class_averages.cs with its .mrc and particles.cs)")


def read_cryosparc_classes(class_averages: str | Path, particles: str | Path | None = None) -> ClassAverages:
    """Class averages of a cryoSPARC 2D classification.

    Parameters
    ----------
    class_averages : str or Path
        A ``*_class_averages.cs`` file or the job folder.
    particles : str or Path, optional
        The job's ``*_particles.cs`` (alignments2D/class); needed for the class
        distribution, found beside the class averages when omitted.
    """
    ca = Path(class_averages)
    if ca.is_dir():
        ca, particles = find_cryosparc_class_files(ca)
    ds = read_cs(ca)
    for field in ("blob/path", "blob/idx", "blob/psize_A", "blob/res_A"):
        if field not in ds.fields():
            raise InputError(ca, f"missing {field}: not a class_averages .cs file")
    k = len(ds)
    class_index = np.asarray(ds["blob/idx"], dtype=np.int64)
    paths = [v.decode() if isinstance(v, bytes) else str(v) for v in ds["blob/path"]]
    stack = resolve_image_path(paths[0], [ca.parent.resolve()])
    if not stack.exists():
        stack = ca.with_name(Path(paths[0]).name)
    images, _ = read_stack(stack, class_index)
    if particles is None:
        guess = ca.with_name(ca.name.replace("_class_averages.cs", "_particles.cs"))
        particles = guess if guess.exists() else None
    counts = np.zeros(k, dtype=np.int64)
    if particles is not None:
        pds = read_cs(particles, fields=["alignments2D/class"])
        if "alignments2D/class" not in pds.fields():
            raise InputError(particles, "no alignments2D/class field: not a 2D classification's particles")
        cls = np.asarray(pds["alignments2D/class"], dtype=np.int64)
        if len(cls) and cls.max() > class_index.max():
            raise InputError(particles, f"particles assigned to class {int(cls.max())}, but {ca.name} has classes up to {int(class_index.max())}")
        per_class = np.bincount(cls, minlength=int(class_index.max()) + 1)
        counts = per_class[class_index]
    n = counts.sum()
    return ClassAverages(
        images=images,
        pixel_size=float(ds["blob/psize_A"][0]),
        class_numbers=class_index + 1,
        resolution=np.asarray(ds["blob/res_A"], dtype=np.float64),
        distribution=counts / n if n else np.zeros(k),
        particle_count=counts,
        source=ca,
        engine="cryosparc",
    )


def read_class_averages(path: str | Path, particles: str | Path | None = None) -> ClassAverages:
    """Class averages from a RELION job folder or model.star, or a cryoSPARC job folder or .cs
    (a workflow's ``classification.json`` names its model.star:
    :func:`cryosift.pipeline.manifest.class_averages_of`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        if any(p.glob("*_model.star")):
            return read_relion_classes(p)
        if any(p.glob("*_class_averages.cs")):
            return read_cryosparc_classes(p)
        raise InputError(p, "neither a RELION Class2D nor a cryoSPARC 2D job folder")
    if p.name.endswith("_model.star"):
        return read_relion_classes(p)
    if p.suffix == ".cs":
        return read_cryosparc_classes(p, particles)
    raise InputError(p, "expected a Class2D job folder, a run_itNNN_model.star or a class_averages .cs")
