"""Conversion between cryoSPARC .cs and RELION STAR particle files.

cs -> STAR follows pyem's ``csparc2star.py`` (default options) except for shifts, where it
follows cryoSPARC's own definition (below):

- ``blob/path`` + ``blob/idx`` (0-based) -> ``rlnImageName`` ``NNNNNN@path`` (1-based); the
  ``>`` that starts every path of a file cryoSPARC exported is removed (from
  ``location/micrograph_path`` too), as pyem and cryoDRGN do: RELION cannot open
  ``>J1/...``. Stacks are then found next to the .cs file or in a folder above it;
- ``alignments3D/pose`` (rotation vector, rad) -> ``rlnAngleRot/Tilt/Psi`` (deg, RELION ZYZ);
  ``alignments2D/pose`` (in-plane angle, rad) -> ``rlnAnglePsi`` (deg);
- ``alignments*/shift`` (px of ``alignments*/psize_A``) -> ``rlnOriginX/YAngst`` = shift x
  ``alignments*/psize_A`` (same sign). cryoSPARC refines shifts on the images it aligned,
  which are binned on the fly when ``alignments*/psize_A`` > ``blob/psize_A``; pyem's default
  multiplies by ``blob/psize_A`` and is wrong by their ratio there (its ``--boxsize`` and
  pyem pull request 125 correct it). The two agree where the pixel sizes are equal;
- ``alignments*/class`` and ``ctf/exp_group_id`` (0-based) -> ``rlnClassNumber`` and
  ``rlnOpticsGroup`` (1-based); ``alignments3D/split``, else ``alignments2D/split`` (0/1) ->
  ``rlnRandomSubset`` (1/2), left out when the split holds one value only (as pyem);
- ``location/center_x_frac``, ``center_y_frac`` and ``micrograph_shape`` (height, width) ->
  ``rlnCoordinateX`` = x_frac x width, ``rlnCoordinateY`` = (1 - y_frac) x height, whole
  pixels: cryoSPARC counts Y from the bottom edge, RELION from the top
  (:func:`cryosift.io.cs.coordinates_to_relion`);
- ``ctf/df1_A``, ``df2_A`` -> ``rlnDefocusU/V`` (Å); ``df_angle_rad``, ``phase_shift_rad`` -> degrees;
- an optics block with Voltage, ImagePixelSize (``blob/psize_A``), SphericalAberration,
  AmplitudeContrast, OpticsGroup, ImageSize and ImageDimensionality.

STAR -> cs (which pyem lacks) inverts each of these. Shifts are written in px of the image
pixel size and ``alignments*/psize_A`` is set to that same pixel size, so cryoSPARC and
pyem read the same Å back. Paths are written as cryoSPARC's own jobs write them (no ``>``,
relative to the project folder), or with the marker when ``exported=True`` for a file meant
to sit in a cryoSPARC export folder beside its stacks. Coordinates need the micrograph
shape (``micrograph_shape``, read from the micrographs when they are at hand). 3D
alignments are written when the STAR file has non-zero rot/tilt angles, 2D alignments
otherwise. Fields are written in cryoSPARC's own dtypes (float32) unless ``double=True``,
which keeps float64 so that a STAR -> cs -> STAR round trip is exact.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from cryosparc.dataset import Dataset

from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path
from cryosift.io.cs import (add_export_mark, coordinates_to_cryosparc, coordinates_to_relion, read_cs,
                            strip_export_mark, write_cs)
from cryosift.io.models import OPTICS_LABELS, ParticleSet, join_image_names, resolve_image_path, split_image_names
from cryosift.io.rotations import euler_to_rotvec, rotvec_to_euler
from cryosift.io.star import read_particles_star, write_particles_star

log = logging.getLogger(__name__)

# cs scalar field -> (RELION label, factor cs -> STAR)
_CTF_FIELDS = {
    "ctf/df1_A": ("rlnDefocusU", 1.0),
    "ctf/df2_A": ("rlnDefocusV", 1.0),
    "ctf/df_angle_rad": ("rlnDefocusAngle", 180.0 / np.pi),
    "ctf/phase_shift_rad": ("rlnPhaseShift", 180.0 / np.pi),
    "ctf/bfactor": ("rlnCtfBfactor", 1.0),
    "ctf/scale": ("rlnCtfScalefactor", 1.0),
}
_OPTICS_FIELDS = {
    "ctf/accel_kv": "rlnVoltage",
    "ctf/cs_mm": "rlnSphericalAberration",
    "ctf/amp_contrast": "rlnAmplitudeContrast",
}


# --------------------------------------------------------------------------- cs -> ParticleSet

def particles_from_dataset(ds: Dataset, source: Path | None = None, prefer: str = "3d") -> ParticleSet:
    """Convert a cryoSPARC particle Dataset to a ParticleSet (pyem's conventions).

    Parameters
    ----------
    ds : Dataset
        Particles with at least ``blob/path``, ``blob/idx`` and ``blob/psize_A``.
    source : Path, optional
        The .cs file, for messages and to resolve relative stack paths.
    prefer : {"3d", "2d"}
        Which alignments give the pose and class when a file has both.
    """
    fields = set(ds.fields())
    missing = [f for f in ("blob/path", "blob/idx", "blob/psize_A") if f not in fields]
    if missing:
        raise InputError(source, f"missing {', '.join(missing)}: not a particle .cs file")
    n = len(ds)
    df = pd.DataFrame({"rlnImageName": join_image_names(ds["blob/idx"], strip_export_mark(ds["blob/path"]))})
    group = ds["ctf/exp_group_id"].astype(np.int64) + 1 if "ctf/exp_group_id" in fields else np.ones(n, np.int64)
    df["rlnOpticsGroup"] = group
    for field, (label, factor) in _CTF_FIELDS.items():
        if field in fields:
            df[label] = ds[field].astype(np.float64) * factor
    if "location/micrograph_path" in fields:
        df["rlnMicrographName"] = strip_export_mark(ds["location/micrograph_path"])
    if {"location/center_x_frac", "location/center_y_frac", "location/micrograph_shape"} <= fields:
        df["rlnCoordinateX"], df["rlnCoordinateY"] = coordinates_to_relion(
            ds["location/center_x_frac"], ds["location/center_y_frac"], ds["location/micrograph_shape"])

    has3d = "alignments3D/pose" in fields
    has2d = "alignments2D/pose" in fields or "alignments2D/class" in fields
    use = "3d" if has3d and (prefer == "3d" or not has2d) else ("2d" if has2d else None)
    psize_blob = ds["blob/psize_A"].astype(np.float64)
    if use == "3d":
        rot, tilt, psi = rotvec_to_euler(ds["alignments3D/pose"])
        df["rlnAngleRot"], df["rlnAngleTilt"], df["rlnAnglePsi"] = rot, tilt, psi
        _shift_to_origin(ds, "alignments3D", df, psize_blob)
        if "alignments3D/class" in fields:
            df["rlnClassNumber"] = ds["alignments3D/class"].astype(np.int64) + 1
    elif use == "2d":
        if "alignments2D/pose" in fields:
            df["rlnAnglePsi"] = np.degrees(ds["alignments2D/pose"].astype(np.float64))
        _shift_to_origin(ds, "alignments2D", df, psize_blob)
        if "alignments2D/class" in fields:
            df["rlnClassNumber"] = ds["alignments2D/class"].astype(np.int64) + 1
        if "alignments2D/class_posterior" in fields:
            df["rlnMaxValueProbDistribution"] = ds["alignments2D/class_posterior"].astype(np.float64)
    # The half sets are a property of the particles: a 3D refinement's split wins over a 2D one.
    split = next((f for f in ("alignments3D/split", "alignments2D/split") if f in fields), None)
    if split is not None and len(np.unique(ds[split])) > 1:
        df["rlnRandomSubset"] = ds[split].astype(np.int64) + 1

    optics = _optics_from_dataset(ds, source, group, psize_blob)
    return ParticleSet(df, optics, source=source, extra={"uid": np.asarray(ds["uid"])})


def _shift_to_origin(ds: Dataset, prefix: str, df: pd.DataFrame, psize_blob: np.ndarray) -> None:
    """rlnOriginX/YAngst from shifts in px of the alignment's pixel size (the image's when absent)."""
    if f"{prefix}/shift" not in ds.fields():
        return
    psize = ds[f"{prefix}/psize_A"].astype(np.float64) if f"{prefix}/psize_A" in ds.fields() else psize_blob
    shift = ds[f"{prefix}/shift"].astype(np.float64)
    df["rlnOriginXAngst"] = shift[:, 0] * psize
    df["rlnOriginYAngst"] = shift[:, 1] * psize


def _optics_from_dataset(ds: Dataset, source, group: np.ndarray, psize: np.ndarray) -> pd.DataFrame:
    fields = set(ds.fields())
    cols = {"rlnOpticsGroup": group, "rlnImagePixelSize": psize}
    for field, label in _OPTICS_FIELDS.items():
        if field in fields:
            cols[label] = ds[field].astype(np.float64)
    if "blob/shape" in fields:
        cols["rlnImageSize"] = ds["blob/shape"][:, -1].astype(np.int64)
    table = pd.DataFrame(cols)
    optics = table.drop_duplicates().sort_values("rlnOpticsGroup").reset_index(drop=True)
    if optics["rlnOpticsGroup"].duplicated().any():
        g = int(optics.loc[optics["rlnOpticsGroup"].duplicated(), "rlnOpticsGroup"].iloc[0])
        raise InputError(source, f"exposure group {g - 1} mixes different voltage, Cs, amplitude contrast, pixel or box sizes")
    optics["rlnOpticsGroupName"] = [f"opticsGroup{g}" for g in optics["rlnOpticsGroup"]]
    optics["rlnImageDimensionality"] = 2
    return optics[[c for c in OPTICS_LABELS if c in optics]]


def read_particles_cs(path: str | Path, prefer: str = "3d") -> ParticleSet:
    """Read a cryoSPARC particle .cs file as a ParticleSet."""
    p = Path(path)
    return particles_from_dataset(read_cs(p), source=p, prefer=prefer)


# --------------------------------------------------------------------------- ParticleSet -> cs

def dataset_from_particles(pset: ParticleSet, double: bool = False, alignments: str = "auto",
                           micrograph_shape: tuple[int, int] | np.ndarray | None = None, seed: int = 0,
                           exported: bool = False) -> Dataset:
    """Convert a ParticleSet to a cryoSPARC particle Dataset (inverse of the cs -> STAR rules).

    Parameters
    ----------
    pset : ParticleSet
        Particles; CTF labels are required.
    double : bool
        Keep float64 for converted fields (exact round trips) instead of cryoSPARC's float32.
    alignments : {"auto", "2d", "3d", "none"}
        Which alignment fields to write; auto picks 3D when rot/tilt are non-zero.
    micrograph_shape : (int, int) or np.ndarray, optional
        Micrograph (height, width) in px, cryoSPARC's order, one for all particles or shape
        (n, 2), to write ``location/*`` from rlnCoordinateX/Y (Y turned to count from the
        bottom edge).
    seed : int
        Seed for particle uids when the set carries none.
    exported : bool
        Start every path with cryoSPARC's export marker ``>`` (a file for a cryoSPARC
        export folder, whose stacks lie beside it); plain project-relative paths otherwise.
    """
    pset.require(("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
                  "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize"), "a cryoSPARC particle file")
    df = pset.particles
    n = len(df)
    fdt = "f8" if double else "f4"
    index, paths = split_image_names(df["rlnImageName"])
    psize = pset.pixel_size
    box = pset.box if "rlnImageSize" in pset.optics else None

    mode = alignments
    if mode == "auto":
        rot_tilt = [c for c in ("rlnAngleRot", "rlnAngleTilt") if c in df]
        if rot_tilt and np.any(df[rot_tilt].to_numpy() != 0):
            mode = "3d"
        elif "rlnClassNumber" in df or "rlnAnglePsi" in df:
            mode = "2d"
        else:
            mode = "none"

    spec = [("blob/path", "O"), ("blob/idx", "u4"), ("blob/psize_A", fdt), ("blob/sign", "f4"),
            ("ctf/type", "O"), ("ctf/exp_group_id", "u4"), ("ctf/accel_kv", fdt), ("ctf/cs_mm", fdt),
            ("ctf/amp_contrast", fdt)]
    spec += [(field, fdt) for field, (label, _) in _CTF_FIELDS.items() if label in df]
    if box is not None:
        spec.append(("blob/shape", "u4", (2,)))
    if micrograph_shape is not None and {"rlnCoordinateX", "rlnCoordinateY"} <= set(df.columns):
        spec += [("location/micrograph_path", "O"), ("location/micrograph_shape", "u4", (2,)),
                 ("location/center_x_frac", fdt), ("location/center_y_frac", fdt)]
    elif "rlnMicrographName" in df:
        spec.append(("location/micrograph_path", "O"))
    prefix = {"3d": "alignments3D", "2d": "alignments2D"}.get(mode)
    if prefix:
        spec += [(f"{prefix}/pose", fdt, (3,)) if mode == "3d" else (f"{prefix}/pose", fdt),
                 (f"{prefix}/shift", fdt, (2,)), (f"{prefix}/psize_A", fdt), (f"{prefix}/class", "u4")]
        if mode == "3d":
            spec.append(("alignments3D/split", "u4"))
        else:
            if "rlnRandomSubset" in df:
                spec.append(("alignments2D/split", "u4"))
            if "rlnMaxValueProbDistribution" in df:
                spec.append(("alignments2D/class_posterior", fdt))

    uid = pset.extra.get("uid")
    if uid is None or len(uid) != n:
        uid = np.random.default_rng(seed).integers(1, 2**63 - 1, size=n, dtype=np.int64).astype(np.uint64)
    ds = Dataset.allocate(n, spec)
    ds["uid"] = uid
    ds["blob/path"] = add_export_mark(paths) if exported else strip_export_mark(paths)
    ds["blob/idx"] = index
    ds["blob/psize_A"] = psize
    ds["blob/sign"] = 1.0  # RELION convention: protein is white in the stack
    ds["ctf/type"] = np.full(n, "imported", dtype=object)
    ds["ctf/exp_group_id"] = df["rlnOpticsGroup"].to_numpy(np.int64) - 1
    for field, label in _OPTICS_FIELDS.items():
        ds[field] = pset._optics_column(label).astype(np.float64)
    for field, (label, factor) in _CTF_FIELDS.items():
        if label in df:
            ds[field] = df[label].to_numpy(np.float64) / factor
    if box is not None:
        ds["blob/shape"] = np.tile(pset._optics_column("rlnImageSize").astype(np.int64)[:, None], (1, 2))
    if "location/micrograph_path" in ds.fields():
        mics = df["rlnMicrographName"].astype(str).to_numpy(dtype=object) \
            if "rlnMicrographName" in df else np.full(n, "", dtype=object)
        ds["location/micrograph_path"] = add_export_mark(mics) if exported else strip_export_mark(mics)
    if "location/micrograph_shape" in ds.fields():
        shape = np.broadcast_to(np.asarray(micrograph_shape, dtype=np.int64).reshape(-1, 2), (n, 2))
        if n and shape.min() <= 0:
            raise InputError(pset.source, f"micrograph shape {shape[np.argmin(shape.min(axis=1))].tolist()} "
                                          "is not a (height, width) in px")
        ds["location/micrograph_shape"] = shape
        ds["location/center_x_frac"], ds["location/center_y_frac"] = coordinates_to_cryosparc(
            df["rlnCoordinateX"].to_numpy(np.float64), df["rlnCoordinateY"].to_numpy(np.float64), shape)
    if prefix:
        zeros = np.zeros(n)
        ox = df["rlnOriginXAngst"].to_numpy(np.float64) if "rlnOriginXAngst" in df else zeros
        oy = df["rlnOriginYAngst"].to_numpy(np.float64) if "rlnOriginYAngst" in df else zeros
        ds[f"{prefix}/shift"] = np.stack([ox / psize, oy / psize], axis=1)
        ds[f"{prefix}/psize_A"] = psize
        ds[f"{prefix}/class"] = df["rlnClassNumber"].to_numpy(np.int64) - 1 if "rlnClassNumber" in df else 0
        angle = {c: df[c].to_numpy(np.float64) if c in df else zeros for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")}
        if mode == "3d":
            ds["alignments3D/pose"] = euler_to_rotvec(angle["rlnAngleRot"], angle["rlnAngleTilt"], angle["rlnAnglePsi"])
            ds["alignments3D/split"] = df["rlnRandomSubset"].to_numpy(np.int64) - 1 if "rlnRandomSubset" in df else 0
        else:
            ds["alignments2D/pose"] = np.radians(angle["rlnAnglePsi"])
            if "alignments2D/split" in ds.fields():
                ds["alignments2D/split"] = df["rlnRandomSubset"].to_numpy(np.int64) - 1
            if "alignments2D/class_posterior" in ds.fields():
                ds["alignments2D/class_posterior"] = df["rlnMaxValueProbDistribution"].to_numpy(np.float64)
    return ds


# --------------------------------------------------------------------------- file-level

def pyem_available() -> str | None:
    """Path of asarnow's ``csparc2star.py`` when it is on PATH (PyPI's 'pyem' is unrelated)."""
    return shutil.which("csparc2star.py")


def _pyem_shift_box(ds: Dataset, source: Path) -> float | None:
    """The ``--boxsize`` that makes csparc2star.py read shifts in the alignment's pixels.

    pyem turns shifts into Å with ``blob/psize_A``; cryoSPARC stores them in px of
    ``alignments*/psize_A``. pyem rescales shifts by ``blob box / --boxsize``, so the box
    the alignments were refined at (blob box x blob psize / alignment psize) makes its
    output equal ours. None when the two pixel sizes agree.
    """
    fields = set(ds.fields())
    # csparc2star.py takes 3D alignments when a 3D class posterior is there, else 2D.
    prefix = next((p for p in ("alignments3D", "alignments2D") if f"{p}/class_posterior" in fields), None)
    if prefix is None or f"{prefix}/shift" not in fields or f"{prefix}/psize_A" not in fields:
        return None
    ratio = ds[f"{prefix}/psize_A"].astype(np.float64) / ds["blob/psize_A"].astype(np.float64)
    if np.allclose(ratio, 1.0, rtol=1e-6):
        return None
    if "blob/shape" not in fields or not np.allclose(ratio, ratio[0], rtol=1e-6):
        raise InputError(source, f"{prefix}/psize_A differs from blob/psize_A and csparc2star.py can rescale "
                                 "shifts by one refinement box only; use --backend cryosift")
    return float(ds["blob/shape"][0, -1] / ratio[0])


def _cs_to_star_pyem(cs_path: Path, star_path: str | Path) -> ParticleSet:
    exe = pyem_available()
    if exe is None:
        raise InputError(None, "csparc2star.py (asarnow's pyem) is not on PATH; use --backend cryosift")
    ds = read_cs(cs_path)
    if "blob/path" not in ds.fields():
        raise InputError(cs_path, "missing blob/path: not a particle .cs file")
    args = []
    box = _pyem_shift_box(ds, cs_path)
    if box is not None:
        args += ["--boxsize", repr(box)]
    with tempfile.TemporaryDirectory(prefix="cryosift-pyem-") as tmpdir, atomic_path(star_path) as tmp:
        source = cs_path
        with open(cs_path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":  # pyem reads with np.load: give it the numpy format
                source = Path(tmpdir) / cs_path.name
                write_cs(source, ds)
        proc = subprocess.run([exe, *args, str(source), str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise InputError(cs_path, f"csparc2star.py failed (exit {proc.returncode}): {tail}")
    return read_particles_star(star_path)


def cs_to_star(cs_path: str | Path, star_path: str | Path, backend: str = "cryosift", prefer: str = "3d") -> ParticleSet:
    """Convert a particle .cs file to a RELION 3.1 STAR file.

    Parameters
    ----------
    backend : {"cryosift", "pyem", "auto"}
        Our converter, asarnow's csparc2star.py, or pyem when installed else ours. pyem is
        called so that its numbers equal ours: with ``--boxsize`` where the alignments'
        pixel size differs from the images' (shifts), and on a numpy-format copy of a
        compressed .cs file. pyem picks 3D or 2D alignments itself (``prefer`` is ours only).
    """
    if backend == "auto":
        backend = "pyem" if pyem_available() else "cryosift"
    if backend == "pyem":
        return _cs_to_star_pyem(Path(cs_path), star_path)
    pset = read_particles_cs(cs_path, prefer=prefer)
    write_particles_star(star_path, pset)
    return pset


def micrograph_shapes(pset: ParticleSet) -> np.ndarray | None:
    """Each particle's micrograph (height, width) in px from the micrographs' MRC headers.

    Micrographs are found like image stacks (as named, then next to the particle file and
    in the folders above it). Returns int64 shape (n, 2), or None when the set has no
    rlnMicrographName or a micrograph is not at hand.
    """
    if "rlnMicrographName" not in pset.particles:
        return None
    from cryosift.io.mrc import stack_info

    names = pset.particles["rlnMicrographName"].astype(str)
    anchors = [pset.source.parent.resolve()] if pset.source is not None else []
    shapes = {}
    for name in pd.unique(names):
        path = resolve_image_path(name, anchors)
        if not path.is_file():
            log.warning("micrograph %s not found: location/* left out (give --micrograph-shape)", name)
            return None
        shapes[name] = stack_info(path)["shape"][-2:]  # MRC data are (rows, columns) = (height, width)
    return np.array([shapes[m] for m in names], dtype=np.int64).reshape(-1, 2)


def star_to_cs(star_path: str | Path, cs_path: str | Path, double: bool = False, alignments: str = "auto",
               micrograph_shape: tuple[int, int] | None = None, pixel_size: float | None = None,
               exported: bool = False) -> Dataset:
    """Convert a RELION particle STAR file (3.0 or 3.1) to a cryoSPARC .cs file.

    Parameters
    ----------
    micrograph_shape : (int, int), optional
        Micrograph (height, width) in px for ``location/*``; read from the micrographs'
        headers when omitted and they are at hand.
    exported : bool
        Write paths with cryoSPARC's export marker ``>`` (see :func:`dataset_from_particles`).
    """
    pset = read_particles_star(star_path, pixel_size=pixel_size)
    if micrograph_shape is None and {"rlnCoordinateX", "rlnCoordinateY"} <= set(pset.particles.columns):
        micrograph_shape = micrograph_shapes(pset)
    ds = dataset_from_particles(pset, double=double, alignments=alignments, micrograph_shape=micrograph_shape,
                                exported=exported)
    write_cs(cs_path, ds)
    return ds


def read_particles(path: str | Path, pixel_size: float | None = None) -> ParticleSet:
    """Read particles from a RELION STAR or cryoSPARC .cs file, by extension."""
    p = Path(path)
    if p.suffix == ".cs":
        return read_particles_cs(p)
    if p.suffix == ".star":
        return read_particles_star(p, pixel_size=pixel_size)
    raise InputError(p, "particles must be a .star or .cs file")


def write_particles(path: str | Path, pset: ParticleSet, **kwargs) -> None:
    """Write particles as RELION STAR or cryoSPARC .cs, by extension."""
    p = Path(path)
    if p.suffix == ".cs":
        write_cs(p, dataset_from_particles(pset, **kwargs))
    elif p.suffix == ".star":
        write_particles_star(p, pset)
    else:
        raise InputError(p, "particles must be written as .star or .cs")
