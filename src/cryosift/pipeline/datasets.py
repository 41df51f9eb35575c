"""The datasets sheet: what each dataset is, where it comes from, and the facts the DAG needs early.

A dataset is one of

- ``simulated``: ``source`` is a simulator preset name (e.g. ``demo``) or a settings YAML;
- ``relion``: ``source`` is a particle STAR file (3.0 or 3.1), a Class2D job folder or a
  ``run_itNNN_model.star`` (then round 1 scores that classification instead of making one);
- ``cryosparc``: ``source`` is a particle ``.cs`` file, a 2D classification job folder or its
  ``*_class_averages.cs`` (the ``*_particles.cs`` beside it gives the classes); or, for the
  ``cryosparc`` engine, a job on the server: ``J12`` (a finished 2D classification, scored
  in round 1 as it is) or ``J10.particles`` (particles to classify). An existing path is
  always read as a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError

TYPES = ("simulated", "relion", "cryosparc")

_SERVER_JOB = re.compile(r"^J\d+$")
_SERVER_OUTPUT = re.compile(r"^J\d+\.[A-Za-z][A-Za-z0-9_]*$")


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
    on_server : bool
        The source is a job (``J12``) or job output (``J10.particles``) on a CryoSPARC server.
    """

    type: str
    path: str
    has_classes: bool
    on_server: bool = False


def describe_source(kind: str, source: str, where=None) -> Source:
    """Classify a sheet row's source; InputError if it does not fit its type."""
    if kind not in TYPES:
        raise InputError(where, f"dataset type {kind!r} is not one of {', '.join(TYPES)}")
    if kind == "simulated":
        return Source(kind, source, False)
    p = Path(source)
    if not p.exists():
        if kind == "cryosparc" and _SERVER_JOB.match(source):
            return Source(kind, source, True, on_server=True)
        if kind == "cryosparc" and _SERVER_OUTPUT.match(source):
            return Source(kind, source, False, on_server=True)
        hint = " (nor a CryoSPARC job such as J12 or J10.particles)" if kind == "cryosparc" else ""
        raise InputError(where, f"source {source} not found{hint}")
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


def check_engine(source: Source, engine: str, where=None) -> None:
    """Refuse a source the engine cannot reach: a job on a CryoSPARC server needs the ``cryosparc``
    engine, and that engine works only on particles on its server."""
    if source.on_server and engine != "cryosparc":
        raise InputError(where, f"source {source.path} is a job on the CryoSPARC server: set engine cryosparc "
                                f"(not {engine}), or give the exported .cs files")
    if engine == "cryosparc" and not source.on_server:
        raise InputError(where, f"engine cryosparc works on particles on the server: give the source as a 2D job "
                                f"(J12) or particles (J10.particles), not {source.path}")


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


def source_box(source: Source, where=None) -> int:
    """Extraction box in px of a dataset's particles (from headers where possible).

    A source on a CryoSPARC server has no local header: its box must be given
    (``cryosparc.extraction_box`` or the sheet's ``box`` column), so this raises InputError.
    """
    if source.on_server:
        raise InputError(where, f"the extraction box of {source.path} on the CryoSPARC server is unknown here: "
                                "set cryosparc.extraction_box or the sheet's box column (or the rounds)")
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
