"""cryoSPARC ``.cs`` files through cryosparc-tools' Dataset (both on-disk formats).

Particle files carry ``blob/*`` (image location), ``ctf/*``, ``alignments2D/*`` (class,
in-plane pose in radians, shift in px) and ``alignments3D/*`` (rotation-vector pose,
shift in px, half-set split); class-average files carry ``blob/*`` with ``blob/res_A``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cryosparc.dataset import Dataset

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import atomic_path

#: Field prefixes a particle or class-average file may carry.
KNOWN_PREFIXES = (
    "blob", "ctf", "alignments2D", "alignments3D", "alignments_class", "location", "pick_stats",
    "micrograph_blob", "sym_expand", "filament", "ml_properties", "ctf_stats", "movie_blob",
    "mscope_params", "background_blob", "rigid_motion", "spline_motion", "gain_ref_blob",
    "motion", "alignments3D_multi", "components_mode", "local_ctf", "intrinsic",
)


def read_cs(path: str | Path, fields=None) -> Dataset:
    """Load a .cs file (numpy or compressed CSDAT format).

    Parameters
    ----------
    path : str or Path
        The ``.cs`` file.
    fields : sequence of str, optional
        Only these fields (plus ``uid``); all when omitted.

    Raises
    ------
    InputError
        Missing or unreadable file, or a file whose fields are all unknown.
    """
    p = require_file(path)
    try:
        ds = Dataset.load(p, fields=list(fields) if fields else None)
    except Exception as exc:  # numpy / Dataset raise several types on bad bytes
        raise InputError(p, f"not a readable cryoSPARC .cs file ({type(exc).__name__}: {exc})") from None
    prefixes = {f.split("/", 1)[0] for f in ds.fields() if f != "uid"}
    if prefixes and not prefixes & set(KNOWN_PREFIXES):
        raise InputError(p, f"no cryoSPARC particle or class fields; unknown fields: {', '.join(sorted(ds.fields())[:8])}")
    for f in ds.fields():
        arr = ds[f]
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InputError(p, f"{int((~np.isfinite(arr)).sum())} NaN or infinite values in {f}")
    return ds


def write_cs(path: str | Path, ds: Dataset) -> None:
    """Save a Dataset atomically in the numpy .cs format every cryoSPARC version reads."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            ds.save(fh)


def field_summary(ds: Dataset) -> dict:
    """Field name -> 'dtype' or 'dtype[shape]' for a Dataset."""
    out = {}
    for name, *rest in ds.descr():
        if name == "uid":
            continue
        out[name] = str(np.dtype(rest[0])) + (f"{list(rest[1])}" if len(rest) > 1 else "")
    return out
