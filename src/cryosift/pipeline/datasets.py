"""The datasets sheet: what each dataset is, where it comes from, and the facts the DAG needs early.

A dataset is one of

- ``simulated``: ``source`` is a simulator preset name (e.g. ``demo``) or a settings YAML;
- ``relion``: ``source`` is a particle STAR file (3.0 or 3.1), a Class2D job folder or a
  ``run_itNNN_model.star`` (then round 1 scores that classification instead of making one);
- ``cryosparc``: ``source`` is a particle ``.cs`` file, a 2D classification job folder or its
  ``*_class_averages.cs`` (the ``*_particles.cs`` beside it gives the classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError

TYPES = ("simulated", "relion", "cryosparc")


@dataclass(frozen=True)
class Source:
    """What a dataset's source is.

    Attributes
    ----------
    type : str
        ``simulated``, ``relion`` or ``cryosparc``.
    path : str
        The source as written in the sheet.
    has_classes : bool
        The source is a finished 2D classification (round 1 scores it as it is).
    """

    type: str
    path: str
    has_classes: bool


def describe_source(kind: str, source: str, where=None) -> Source:
    """Classify a sheet row's source; InputError if it does not fit its type."""
    if kind not in TYPES:
        raise InputError(where, f"dataset type {kind!r} is not one of {', '.join(TYPES)}")
    if kind == "simulated":
        return Source(kind, source, False)
    p = Path(source)
    if not p.exists():
        raise InputError(where, f"source {source} not found")
    if kind == "relion":
        if p.is_dir() or p.name.endswith("_model.star"):
            return Source(kind, source, True)
        if p.suffix == ".star":
            return Source(kind, source, False)
        raise InputError(where, f"relion source {source} is neither a particle STAR file nor a Class2D job")
    if p.is_dir() or p.name.endswith("_class_averages.cs"):
        return Source(kind, source, True)
    if p.suffix == ".cs":
        return Source(kind, source, False)
    raise InputError(where, f"cryosparc source {source} is neither a particle .cs file nor a 2D job")


def star_box(path: str | Path) -> int:
    """Box in px from a particle STAR file's optics block, reading only the file's head."""
    p = Path(path)
    text = []
    with open(p) as fh:
        for line in fh:
            text.append(line)
            if line.startswith("data_particles") or len(text) > 400:
                break
    head = "".join(text)
    from io import StringIO

    import starfile

    try:
        blocks = starfile.read(StringIO(head.split("data_particles")[0]), always_dict=True) if "data_optics" in head else {}
    except Exception:  # noqa: BLE001 - fall back to the full reader below
        blocks = {}
    optics = blocks.get("optics")
    if isinstance(optics, pd.DataFrame) and "rlnImageSize" in optics:
        return int(optics["rlnImageSize"].max())
    from cryosift.io.star import read_particles_star

    return read_particles_star(p).box


def source_box(source: Source) -> int:
    """Extraction box in px of a dataset's particles (from headers where possible)."""
    if source.type == "simulated":
        from cryosift.simulate.presets import PRESETS
        from cryosift.simulate.spec import SimulationSpec

        if source.path in PRESETS:
            return int(PRESETS[source.path]["box"])
        return int(SimulationSpec.from_yaml(source.path).box)
    p = Path(source.path)
    if source.type == "relion":
        if p.is_dir() or p.name.endswith("_model.star"):
            from cryosift.io.star import class2d_iteration_files, last_finished_iteration

            data = last_finished_iteration(p)["data"] if p.is_dir() else class2d_iteration_files(p)["data"]
            return star_box(data)
        return star_box(p)
    from cryosift.io.cs import read_cs

    if p.is_dir():
        from cryosift.io.classes import find_cryosparc_class_files

        p = find_cryosparc_class_files(p)[1]
    elif p.name.endswith("_class_averages.cs"):
        p = p.with_name(p.name.replace("_class_averages.cs", "_particles.cs"))
    ds = read_cs(p, fields=["blob/shape"])
    if "blob/shape" not in ds.fields():
        raise InputError(p, "no blob/shape: cannot tell the box size (give it in the sheet's box column)")
    return int(np.max(ds["blob/shape"]))


def rounds_for(box: int, override=None) -> int:
    """Loop rounds: the configured number, or the published rule from the box."""
    if override not in (None, "auto", ""):
        return int(override)
    from cryosift.selection.policy import rounds_for_box

    return rounds_for_box(box)
