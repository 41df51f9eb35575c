"""Class averages to score: RELION and cryoSPARC jobs, or a plain stack with a feature table.

A plain stack (``.mrcs``/``.mrc``) comes with a CSV of one row per image, in stack order:
``resolution_A`` (Å) and ``distribution`` (fraction) or ``particles`` (count) are required;
``class`` (1-based number, default 1..k) and ``pixel_size_A`` are optional. The pixel size
is taken from the argument, else the table, else the stack header.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io import read_class_averages, read_class2d_model, read_cs, read_stack
from cryosift.io.models import ClassAverages, resolve_image_path, split_image_names

FEATURE_TABLE_COLUMNS = ("class", "resolution_A", "distribution", "particles", "pixel_size_A")


def read_stack_classes(stack: str | Path, features: str | Path, pixel_size: float | None = None) -> ClassAverages:
    """Class averages from an image stack and a per-class feature table (CSV).

    Parameters
    ----------
    stack : str or Path
        MRC stack of k class averages.
    features : str or Path
        CSV with k rows (see the module description).
    pixel_size : float, optional
        Å/px; overrides the table and the header.
    """
    images, header_apix = read_stack(stack)
    table_path = require_file(features)
    try:
        table = pd.read_csv(table_path)
    except Exception as exc:  # pandas raises several parser errors
        raise InputError(table_path, f"not a readable CSV table ({type(exc).__name__}: {exc})") from None
    k = len(images)
    if len(table) != k:
        raise InputError(table_path, f"{len(table)} rows but the stack {Path(stack).name} holds {k} class averages")
    if "resolution_A" not in table:
        raise InputError(table_path, f"no resolution_A column (columns: {', '.join(FEATURE_TABLE_COLUMNS)})")
    if "distribution" not in table and "particles" not in table:
        raise InputError(table_path, "needs a distribution (fraction) or particles (count) column")

    def numeric(col: str) -> np.ndarray:
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64)
        text = table[col].astype(str).str.strip().str.lower()
        bad = np.isnan(values) & ~text.isin(["nan", "inf", "-nan"]).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(table_path, f"row {row + 1}: {col} {table[col].iloc[row]!r} is not a number")
        return values

    classes = numeric("class").astype(np.int64) if "class" in table else np.arange(1, k + 1)
    if len(np.unique(classes)) != k:
        raise InputError(table_path, "class numbers are not unique")
    counts = numeric("particles") if "particles" in table else np.zeros(k)
    if "distribution" in table:
        distribution = numeric("distribution")
    else:
        distribution = counts / counts.sum() if counts.sum() > 0 else np.zeros(k)
    if pixel_size is None and "pixel_size_A" in table:
        sizes = np.unique(numeric("pixel_size_A"))
        if len(sizes) != 1:
            raise InputError(table_path, f"pixel_size_A differs between rows ({', '.join(f'{s:g}' for s in sizes[:4])})")
        pixel_size = float(sizes[0])
    if pixel_size is None:
        pixel_size = header_apix
    if not pixel_size or pixel_size <= 0:
        raise InputError(stack, "no pixel size: give it with --pixel-size or a pixel_size_A column")
    return ClassAverages(images=images, pixel_size=float(pixel_size), class_numbers=classes,
                         resolution=numeric("resolution_A"), distribution=distribution,
                         particle_count=counts.astype(np.int64), source=Path(stack), engine="stack")


def load_classes(path: str | Path, particles: str | Path | None = None, features: str | Path | None = None,
                 pixel_size: float | None = None) -> ClassAverages:
    """Class averages from any supported input.

    Parameters
    ----------
    path : str or Path
        RELION Class2D job folder or ``run_itNNN_model.star``; cryoSPARC 2D job folder,
        ``*_class_averages.cs`` or its ``.mrc``; or an image stack (with ``features``).
    particles : str or Path, optional
        cryoSPARC ``*_particles.cs`` when it is not beside the class averages.
    features : str or Path, optional
        Feature table for a plain stack.
    pixel_size : float, optional
        Å/px for a plain stack.
    """
    p = Path(path)
    if features is not None:
        return read_stack_classes(p, features, pixel_size)
    if p.suffix == ".mrc" and p.name.endswith("_class_averages.mrc"):
        p = p.with_suffix(".cs")
    elif p.suffix in (".mrc", ".mrcs"):
        raise InputError(p, "a plain stack needs a feature table (--features CSV with resolution_A and distribution)")
    return read_class_averages(p, particles)


def _display_path(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it lies below it (as RELION names files), else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(cwd.resolve()))
    except ValueError:
        return str(absolute)


def class_image_names(classes: ClassAverages, cwd: str | Path | None = None) -> list[str]:
    """RELION image names (``NNNNNN@stack``) of each class average, in class order.

    RELION jobs keep the names of their model.star when those resolve from ``cwd`` (the
    RELION project folder, default: the working folder). Other stacks are named relative to
    ``cwd`` when below it, else absolutely; ``.mrc`` stacks get RELION's ``:mrcs`` suffix.
    """
    base = Path(cwd) if cwd is not None else Path(os.getcwd())
    src = Path(classes.source) if classes.source is not None else None
    k = len(classes)
    if classes.engine == "relion" and src is not None and src.name.endswith("_model.star"):
        names = read_class2d_model(src)[1]["rlnReferenceImage"].astype(str).to_numpy()
        if len(names) == k:
            index, stacks = split_image_names(names)
            out = []
            for i, stack in zip(index, stacks):
                if not (base / stack).exists():  # not relative to the project folder: find it as the reader does
                    found = resolve_image_path(stack, [src.parent.resolve()])
                    found = found if found.exists() else src.with_name(Path(stack).name)
                    stack = _display_path(found, base)
                out.append(f"{i + 1:06d}@{stack}")
            return out
    if classes.engine == "cryosparc" and src is not None and src.suffix == ".cs":
        ds = read_cs(src, fields=["blob/path", "blob/idx"])
        paths = [v.decode() if isinstance(v, bytes) else str(v) for v in ds["blob/path"]]
        stack = resolve_image_path(paths[0], [src.parent.resolve()])
        if not stack.exists():
            stack = src.with_name(Path(paths[0]).name)
        index = np.asarray(ds["blob/idx"], dtype=np.int64)
    elif src is not None and src.suffix in (".mrc", ".mrcs"):
        stack, index = src, np.arange(k)
    else:
        raise InputError(src, "cannot tell which stack holds the class averages")
    name = _display_path(stack, base) + (":mrcs" if stack.suffix == ".mrc" else "")
    return [f"{i + 1:06d}@{name}" for i in index]
