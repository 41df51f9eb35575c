"""cryoSPARC ``.cs`` files through cryosparc-tools' Dataset (both on-disk formats).

Particle files carry ``blob/*`` (image location), ``ctf/*``, ``alignments2D/*`` (class,
in-plane pose in radians, shift in px of ``alignments2D/psize_A``, half-set split),
``alignments3D/*`` (rotation-vector pose, shift in px of ``alignments3D/psize_A``,
half-set split) and ``location/*`` (micrograph, particle centre as fractions of the
micrograph, ``micrograph_shape`` as (height, width) px); class-average files carry
``blob/*`` with ``blob/res_A``.

Two cryoSPARC conventions differ from RELION's and are kept here, in one place:

- Paths in a file that cryoSPARC exported (Export job / result group) start with ``>``:
  the marker says the file is relative to the exported ``.cs`` file's folder rather than
  the project folder; cryoSPARC removes it when it imports the file again.
- ``location/center_y_frac`` counts from the bottom edge of the micrograph, RELION's
  rlnCoordinateY from the top edge (pyem's csparc2star default, and cryoSPARC's Import
  Particles flips Y the same way).
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


#: First character of every path in a .cs file that cryoSPARC exported.
EXPORT_MARK = ">"


def is_exported(paths) -> bool:
    """Whether paths carry cryoSPARC's export marker (the first non-empty one decides)."""
    for p in paths:
        p = p.decode() if isinstance(p, bytes) else str(p)
        if p:
            return p.startswith(EXPORT_MARK)
    return False


def strip_export_mark(paths) -> np.ndarray:
    """Paths without cryoSPARC's leading export marker ``>`` (others unchanged), object array."""
    out = [p.decode() if isinstance(p, bytes) else str(p) for p in paths]
    return np.array([p[1:] if p.startswith(EXPORT_MARK) else p for p in out], dtype=object)


def add_export_mark(paths) -> np.ndarray:
    """Paths with cryoSPARC's export marker, as an exported .cs file holds them (empty stays empty)."""
    out = strip_export_mark(paths)
    return np.array([EXPORT_MARK + p if p else p for p in out], dtype=object)


def coordinates_to_relion(x_frac, y_frac, micrograph_shape) -> tuple[np.ndarray, np.ndarray]:
    """Particle centres from cryoSPARC fractions to RELION pixels (pyem's csparc2star default).

    Parameters
    ----------
    x_frac, y_frac : np.ndarray
        ``location/center_x_frac`` and ``center_y_frac``, shape (n,); y counts from the
        bottom edge.
    micrograph_shape : np.ndarray
        ``location/micrograph_shape``, (height, width) in px, shape (n, 2).

    Returns
    -------
    x, y : np.ndarray
        rlnCoordinateX = x_frac * width and rlnCoordinateY = (1 - y_frac) * height, in px
        from the top-left corner, rounded to whole pixels (half to even), int64, shape (n,).
    """
    shape = np.asarray(micrograph_shape, dtype=np.float64).reshape(-1, 2)
    x_frac, y_frac = np.asarray(x_frac), np.asarray(y_frac)
    # 1 - y in the field's own precision (float32 in cryoSPARC files), as csparc2star.py
    # computes it, so that whole-pixel rounding agrees with pyem even at half pixels.
    flipped = (y_frac.dtype.type(1) - y_frac) if y_frac.dtype.kind == "f" else 1.0 - y_frac
    x = np.round(x_frac.astype(np.float64) * shape[:, 1]).astype(np.int64)
    y = np.round(flipped.astype(np.float64) * shape[:, 0]).astype(np.int64)
    return x, y


def coordinates_to_cryosparc(x, y, micrograph_shape) -> tuple[np.ndarray, np.ndarray]:
    """RELION particle centres (px from the top-left corner) to cryoSPARC fractions.

    The inverse of :func:`coordinates_to_relion` before its rounding: ``x / width`` and
    ``1 - y / height`` (y then counts from the bottom edge), float64, shape (n,).
    """
    shape = np.asarray(micrograph_shape, dtype=np.float64).reshape(-1, 2)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return x / shape[:, 1], 1.0 - y / shape[:, 0]


def field_summary(ds: Dataset) -> dict:
    """Field name -> 'dtype' or 'dtype[shape]' for a Dataset."""
    out = {}
    for name, *rest in ds.descr():
        if name == "uid":
            continue
        out[name] = str(np.dtype(rest[0])) + (f"{list(rest[1])}" if len(rest) > 1 else "")
    return out
