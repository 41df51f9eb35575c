"""STAR files through starfile: RELION 3.0 and 3.1+ particles, Class2D model and data files.

Reading goes through :mod:`starfile`; writing uses a small writer of our own that keeps
full float precision (shortest exact repr) and is fast enough for millions of rows.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import atomic_path
from cryosift.io.models import OPTICS_LABELS, ParticleSet, resolve_image_path, split_image_names

STAR_VERSION = "30001"


def read_star(path: str | Path) -> dict:
    """Read every block of a STAR file.

    Returns
    -------
    dict
        Block name -> DataFrame (loops) or dict (key-value blocks); label names
        without the leading underscore.
    """
    p = require_file(path)
    try:
        blocks = starfile.read(p, always_dict=True, parse_as_string=["rlnImageName", "rlnReferenceImage", "rlnMicrographName"])
    except Exception as exc:  # starfile raises many types on malformed text
        raise InputError(p, f"not a readable STAR file ({type(exc).__name__}: {exc})") from None
    if not blocks:
        raise InputError(p, "STAR file has no data blocks")
    return {name: _numeric_columns(b) if isinstance(b, pd.DataFrame) else b for name, b in blocks.items()}


def _numeric_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Turn text columns that only hold numbers and RELION's 'nan'/'-nan'/'inf' into floats."""
    for col in df.columns:
        s = df[col]
        if s.dtype != object and not pd.api.types.is_string_dtype(s):
            continue
        if col in ("rlnImageName", "rlnReferenceImage", "rlnMicrographName"):
            continue
        try:
            df[col] = np.array([float(v) for v in s.astype(str)], dtype=np.float64)  # float() knows -nan, inf
        except ValueError:
            pass
    return df


def _star_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    text = str(value)
    return f'"{text}"' if (not text or any(c.isspace() for c in text)) else text


def _loop_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == bool:
            out[col] = s.astype(np.int64)
        elif s.dtype == object or pd.api.types.is_string_dtype(s):
            text = s.astype(str)
            needs_quotes = text.str.contains(r"\s", regex=True) | (text == "")
            if needs_quotes.any():
                text = text.where(~needs_quotes, '"' + text + '"')
            out[col] = text
    return out


def write_star(path: str | Path, blocks: dict) -> None:
    """Write STAR blocks atomically, floats at full precision.

    Parameters
    ----------
    path : str or Path
        Output file.
    blocks : dict
        Block name -> DataFrame (written as a loop) or dict (key-value block).
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        for name, block in blocks.items():
            fh.write(f"\n# version {STAR_VERSION}\n\ndata_{name}\n\n")
            if isinstance(block, dict):
                width = max((len(k) for k in block), default=0) + 2
                for key, value in block.items():
                    fh.write(f"_{key:<{width}}{_star_value(value)}\n")
            else:
                fh.write("loop_\n")
                for i, col in enumerate(block.columns, start=1):
                    fh.write(f"_{col} #{i}\n")
                _loop_frame(block).to_csv(fh, sep="\t", header=False, index=False,
                                          quoting=csv.QUOTE_NONE, lineterminator="\n")
            fh.write("\n")


def _check_finite(path: Path, df: pd.DataFrame, what: str) -> None:
    numeric = df.select_dtypes(include=[np.number])
    if numeric.empty:
        return
    bad = ~np.isfinite(numeric.to_numpy(dtype=np.float64))
    if bad.any():
        cols = numeric.columns[bad.any(axis=0)].tolist()
        raise InputError(path, f"{what}: {int(bad.sum())} NaN or infinite values in {', '.join(cols)}")


def _optics_from_relion30(path: Path, df: pd.DataFrame, pixel_size: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build a 3.1 optics table and Å origins from a RELION 3.0 particle table."""
    df = df.copy()
    if "rlnImagePixelSize" in df:
        apix = df["rlnImagePixelSize"].astype(float)
    elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(df.columns):
        apix = df["rlnDetectorPixelSize"].astype(float) * 1e4 / df["rlnMagnification"].astype(float)
    elif pixel_size is not None:
        apix = pd.Series(float(pixel_size), index=df.index)
    else:
        raise InputError(path, "RELION 3.0 particle file without pixel size "
                               "(no rlnDetectorPixelSize/rlnMagnification): give the pixel size")
    df["rlnImagePixelSize"] = apix.round(6)
    keys = [c for c in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize") if c in df]
    groups = df[keys].drop_duplicates().reset_index(drop=True)
    groups["rlnOpticsGroup"] = np.arange(1, len(groups) + 1)
    df = df.merge(groups, on=keys, how="left", sort=False)
    for axis in ("X", "Y"):
        if f"rlnOrigin{axis}" in df:
            df[f"rlnOrigin{axis}Angst"] = df[f"rlnOrigin{axis}"].astype(float) * df["rlnImagePixelSize"]
            df = df.drop(columns=f"rlnOrigin{axis}")
    optics = groups.copy()
    optics["rlnOpticsGroupName"] = [f"opticsGroup{i}" for i in optics["rlnOpticsGroup"]]
    optics["rlnImageDimensionality"] = 2
    optics["rlnImageSize"] = _box_from_stacks(path, df)
    df = df.drop(columns=[c for c in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                                      "rlnImagePixelSize", "rlnDetectorPixelSize", "rlnMagnification") if c in df])
    order = [c for c in OPTICS_LABELS if c in optics] + [c for c in optics if c not in OPTICS_LABELS]
    return df, optics[order]


def _box_from_stacks(path: Path, df: pd.DataFrame) -> int:
    from cryosift.io.mrc import stack_info

    _, paths = split_image_names(df["rlnImageName"].iloc[:1])
    stack = resolve_image_path(paths[0], [path.parent.resolve()])
    if not stack.exists():
        raise InputError(path, f"RELION 3.0 file: cannot find the image stack {paths[0]} to learn the box size")
    return int(stack_info(stack)["shape"][-1])


def particles_from_blocks(path: Path, blocks: dict, pixel_size: float | None = None) -> ParticleSet:
    """Make a ParticleSet from STAR blocks (3.1: optics + particles; 3.0: one table)."""
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if "particles" in tables and "optics" in tables:
        particles, optics = tables["particles"].reset_index(drop=True), tables["optics"].reset_index(drop=True)
    else:
        with_images = [v for v in tables.values() if "rlnImageName" in v]
        if not with_images:
            raise InputError(path, "no particle table (no loop with rlnImageName)")
        particles, optics = _optics_from_relion30(path, with_images[0].reset_index(drop=True), pixel_size)
    if "rlnImageName" not in particles:
        raise InputError(path, "particle table has no rlnImageName")
    if "rlnOpticsGroup" not in particles:
        if len(optics) != 1:
            raise InputError(path, "particles lack rlnOpticsGroup but there are several optics groups")
        particles["rlnOpticsGroup"] = int(optics["rlnOpticsGroup"].iloc[0])
    for label in ("rlnOpticsGroup", "rlnImagePixelSize"):
        if label not in optics:
            raise InputError(path, f"optics table has no {label}")
    _check_finite(path, particles, "particles")
    _check_finite(path, optics, "optics")
    unknown = set(particles["rlnOpticsGroup"].unique()) - set(optics["rlnOpticsGroup"])
    if unknown:
        raise InputError(path, f"particles refer to optics group(s) {sorted(int(g) for g in unknown)} missing from data_optics")
    return ParticleSet(particles, optics, source=Path(path))


def read_particles_star(path: str | Path, pixel_size: float | None = None) -> ParticleSet:
    """Read a RELION particle STAR file (3.0 or 3.1+) into a ParticleSet.

    A 3.0 file (no optics block) is upgraded: optics groups from the distinct
    voltage / Cs / amplitude contrast / pixel size, origins converted from px to Å.

    Parameters
    ----------
    path : str or Path
        ``particles.star`` or a ``run_itNNN_data.star``.
    pixel_size : float, optional
        Å/px, only for 3.0 files that do not record it.

    Raises
    ------
    InputError
        Missing file, no particle table, unknown optics group, NaN/inf values.
    """
    p = Path(path)
    return particles_from_blocks(p, read_star(p), pixel_size)


def write_particles_star(path: str | Path, pset: ParticleSet) -> None:
    """Write a ParticleSet as a RELION 3.1 particle STAR file (optics + particles)."""
    write_star(path, {"optics": pset.optics, "particles": pset.particles})


# --------------------------------------------------------------------------- Class2D jobs

_ITER = re.compile(r"^(?P<prefix>.+?)_it(?P<it>\d{3,})_model\.star$")


def class2d_iteration_files(model_star: str | Path) -> dict:
    """The data.star, classes.mrcs, optimiser.star and sampling.star belonging to a model.star."""
    m = Path(model_star)
    stem = m.name[: -len("_model.star")]
    return {
        "model": m,
        "data": m.with_name(f"{stem}_data.star"),
        "classes": m.with_name(f"{stem}_classes.mrcs"),
        "optimiser": m.with_name(f"{stem}_optimiser.star"),
        "sampling": m.with_name(f"{stem}_sampling.star"),
    }


def last_finished_iteration(job_dir: str | Path) -> dict:
    """Find the last finished iteration of a Class2D job folder.

    An iteration counts as finished when its model.star, data.star and classes.mrcs all
    exist, the model lists as many classes as the stack holds, and its optimiser.star and
    sampling.star exist where the job writes them. RELION 3.1 writes an iteration in the
    order optimiser, model (with the classes), data, sampling, and ``--continue`` needs
    all of them; the builtin engine writes no sampling file and its optimiser.star last.
    A killed run's half-written last iteration is therefore skipped.

    Returns
    -------
    dict
        ``iteration`` (int) and the paths ``model``, ``data``, ``classes``.
    """
    job = Path(job_dir)
    if not job.is_dir():
        raise InputError(job, "Class2D job folder not found")
    found = []
    for f in job.iterdir():
        m = _ITER.match(f.name)
        if m:
            found.append((int(m["it"]), f))
    if not found:
        raise InputError(job, "no run_itNNN_model.star in this folder (not a Class2D job?)")
    written = [k for k in ("optimiser", "sampling") if any(job.glob(f"*_{k}.star"))]
    problems = []
    for it, model in sorted(found, reverse=True):
        files = class2d_iteration_files(model)
        missing = [k for k in ("data", "classes", *written) if not files[k].exists()]
        if missing:
            problems.append(f"iteration {it} lacks {', '.join(missing)}")
            continue
        try:
            _, classes = read_class2d_model(model)
            from cryosift.io.mrc import stack_info

            n_images = stack_info(files["classes"])["n"]
        except InputError as exc:
            problems.append(f"iteration {it}: {exc.problem}")
            continue
        if n_images != len(classes):
            problems.append(f"iteration {it}: {len(classes)} classes in model.star but {n_images} images")
            continue
        return {"iteration": it, **files}
    raise InputError(job, "no finished iteration: " + "; ".join(problems))


def read_class2d_model(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """Read a Class2D ``run_itNNN_model.star``.

    Returns
    -------
    general : dict
        The model_general block (``rlnPixelSize`` in Å/px, ``rlnNrClasses`` ...).
    classes : pd.DataFrame
        The model_classes loop: ``rlnReferenceImage``, ``rlnClassDistribution``,
        ``rlnEstimatedResolution`` (Å; 999 or inf for empty classes) ...
    """
    p = Path(path)
    blocks = read_star(p)
    general = blocks.get("model_general")
    classes = blocks.get("model_classes")
    if not isinstance(general, dict):
        raise InputError(p, "no data_model_general block (not a Class2D model.star?)")
    if not isinstance(classes, pd.DataFrame):
        raise InputError(p, "no data_model_classes loop (not a Class2D model.star?)")
    for label in ("rlnReferenceImage", "rlnClassDistribution", "rlnEstimatedResolution"):
        if label not in classes:
            raise InputError(p, f"data_model_classes has no {label}")
    return general, classes.reset_index(drop=True)
