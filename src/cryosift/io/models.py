"""In-memory models for a particle set and a set of class averages, from either platform.

A :class:`ParticleSet` keeps its tables in RELION 3.1 labels (``rlnDefocusU`` ...) because
they are the field's lingua franca and make STAR round trips lossless; cryoSPARC files
are converted into it on reading and back on writing (see :mod:`cryosift.io.convert`).
Units: defocus in Å, angles in degrees, origins in Å, pixel size in Å/px, box in px.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError

#: Optics labels every particle set carries (RELION 3.1 data_optics).
OPTICS_LABELS = (
    "rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
    "rlnAmplitudeContrast", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality",
)
#: Per-particle CTF labels needed by anything that models the CTF.
CTF_LABELS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
#: Optics labels needed by anything that models the CTF.
CTF_OPTICS_LABELS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")


def split_image_names(names) -> tuple[np.ndarray, np.ndarray]:
    """Split RELION ``NNNNNN@path`` image names.

    Returns
    -------
    index : np.ndarray
        0-based image index in its stack, int64, shape (n,).
    path : np.ndarray
        Stack paths, object array, shape (n,).
    """
    s = pd.Series(np.asarray(names, dtype=object)).astype(str)
    if s.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    parts = s.str.split("@", n=1, expand=True)
    if parts.shape[1] == 1:
        # Single-image files: "path" alone means image 1 of that file.
        return np.zeros(len(s), dtype=np.int64), parts[0].to_numpy(dtype=object)
    has_at = parts[1].notna()
    index = np.where(has_at, pd.to_numeric(parts[0].where(has_at, "1"), errors="coerce"), 1)
    if np.isnan(index).any():
        raise ValueError("image names must look like NNNNNN@path")
    path = np.where(has_at, parts[1], parts[0])
    return index.astype(np.int64) - 1, path.astype(object)


def join_image_names(index, path) -> np.ndarray:
    """Build RELION image names from 0-based indices and stack paths."""
    idx = pd.Series(np.asarray(index, dtype=np.int64) + 1).map("{:06d}".format)
    return (idx + "@" + pd.Series(np.asarray(path, dtype=object)).astype(str)).to_numpy(dtype=object)


def project_relative(path: str | Path) -> str:
    """``path`` relative to the working folder (RELION's project folder) when inside it, else absolute.

    The one way cryosift names a file inside a file it writes (image stacks in
    ``rlnImageName`` and ``rlnReferenceImage``, the files of a dataset): such names stay valid
    for RELION and for every later step, all run from the project folder.
    """
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def project_relative_image_names(pset: "ParticleSet") -> np.ndarray:
    """``rlnImageName`` values of ``pset`` with every stack named by :func:`project_relative`."""
    index, paths = pset.image_locations()
    names = {p: project_relative(p) for p in pd.unique(paths.astype(str))}
    return join_image_names(index, [names[str(p)] for p in paths])


def resolve_image_path(path: str, anchors: list[Path]) -> Path:
    """Find an image stack named relative to a project folder.

    RELION names stacks relative to the project folder and cryoSPARC relative to the
    project's folder too, so a path is tried as given, then against each anchor and
    its parents (nearest first). The first existing file wins.
    """
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    seen = set()
    for anchor in anchors:
        for base in [anchor, *anchor.parents]:
            if base in seen:
                continue
            seen.add(base)
            candidate = base / p
            if candidate.exists():
                return candidate
    return p


@dataclass
class ParticleSet:
    """A set of particles: metadata, optics groups and where the images are.

    Attributes
    ----------
    particles : pd.DataFrame
        One row per particle, RELION 3.1 labels without the leading underscore.
        ``rlnImageName`` (``NNNNNN@stack``) and ``rlnOpticsGroup`` are always present.
    optics : pd.DataFrame
        One row per optics group (labels in :data:`OPTICS_LABELS`).
    source : Path or None
        The file the set was read from; relative stack paths resolve against it.
    extra : dict
        Fields of the source format that have no RELION label, kept for round trips
        (e.g. cryoSPARC ``uid``), as arrays of length n.
    """

    particles: pd.DataFrame
    optics: pd.DataFrame
    source: Path | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.particles)

    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self.particles)

    def _optics_column(self, label: str) -> np.ndarray:
        if label not in self.optics:
            raise InputError(self.source, f"optics table has no {label}")
        lookup = self.optics.set_index("rlnOpticsGroup")[label]
        groups = self.particles["rlnOpticsGroup"].to_numpy()
        missing = ~np.isin(groups, lookup.index.to_numpy())
        if missing.any():
            raise InputError(self.source, f"particles refer to optics group {groups[missing][0]}, which the optics table lacks")
        return lookup.loc[groups].to_numpy()

    @property
    def pixel_size(self) -> np.ndarray:
        """Pixel size per particle in Å/px, shape (n,)."""
        return self._optics_column("rlnImagePixelSize").astype(np.float64)

    def common_pixel_size(self) -> float:
        """The one pixel size (Å/px) of every particle (to 1e-6 Å).

        Raises
        ------
        InputError
            Optics groups with different pixel sizes, named with theirs (such a set must be
            rescaled to one pixel size, or split into datasets, before classification).
        """
        groups = pd.unique(self.particles["rlnOpticsGroup"]) if len(self) else self.optics["rlnOpticsGroup"].to_numpy()
        table = self.optics.set_index("rlnOpticsGroup")
        if "rlnImagePixelSize" not in table:
            raise InputError(self.source, "optics table has no rlnImagePixelSize")
        missing = [g for g in groups if g not in table.index]
        if missing:
            raise InputError(self.source, f"particles refer to optics group {missing[0]}, which the optics table lacks")
        sizes = {g: round(float(table.loc[g, "rlnImagePixelSize"]), 6) for g in groups}
        found = sorted(set(sizes.values()))
        if len(found) == 1:
            return found[0]
        if not found:
            raise InputError(self.source, "no optics group with a pixel size")
        names = table["rlnOpticsGroupName"] if "rlnOpticsGroupName" in table else None
        parts = [f"group {g}{f' ({names[g]})' if names is not None else ''} {size:g} Å/px"
                 for g, size in sizes.items()]
        raise InputError(self.source, f"particles of one set have {len(found)} pixel sizes ({', '.join(parts)}); "
                                      "rescale them to one (relion_image_handler --rescale_angpix) or give each "
                                      "pixel size its own dataset")

    @property
    def box(self) -> int:
        """Image side in px (the same for every optics group, or an error)."""
        if "rlnImageSize" not in self.optics:
            # cryoSPARC files without blob/shape: the stack header knows.
            from cryosift.io.mrc import stack_info

            _, paths = self.image_locations()
            if not len(paths) or not paths[0].exists():
                raise InputError(self.source, "no rlnImageSize and no image stack to read the box size from")
            return int(stack_info(paths[0])["shape"][-1])
        boxes = np.unique(self.optics["rlnImageSize"].to_numpy())
        if len(boxes) != 1:
            raise InputError(self.source, f"particles do not share one box size (found {list(boxes)})")
        return int(boxes[0])

    def image_locations(self) -> tuple[np.ndarray, np.ndarray]:
        """0-based stack indices and resolved stack paths, each shape (n,)."""
        try:
            index, paths = split_image_names(self.particles["rlnImageName"])
        except ValueError as exc:
            raise InputError(self.source, f"rlnImageName: {exc}") from None
        anchors = [self.source.parent.resolve()] if self.source is not None else []
        resolved = {p: resolve_image_path(p, anchors) for p in pd.unique(paths)}
        return index, np.array([resolved[p] for p in paths], dtype=object)

    def subset(self, mask_or_index) -> "ParticleSet":
        """A new set with the selected rows (boolean mask or integer positions), same optics."""
        sel = np.asarray(mask_or_index)
        if sel.dtype == bool:
            sel = np.flatnonzero(sel)
        parts = self.particles.iloc[sel].reset_index(drop=True)
        extra = {k: np.asarray(v)[sel] for k, v in self.extra.items()}
        return ParticleSet(parts, self.optics.copy(), self.source, extra)

    def require(self, labels, what: str) -> None:
        """Raise InputError naming the missing labels needed for ``what``."""
        have = set(self.particles.columns) | set(self.optics.columns)
        missing = [lab for lab in labels if lab not in have]
        if missing:
            raise InputError(self.source, f"missing {', '.join(missing)} (needed for {what})")


#: RELION's "none" in Å: the estimated resolution of an empty or unresolved class (and its
#: alignment accuracies without a measure), the resolution of Fourier shell 0. One value
#: wherever class averages are read, written or scored.
NO_RESOLUTION = 999.0


@dataclass
class ClassAverages:
    """A set of 2D class averages with the per-class numbers the scorer needs.

    Attributes
    ----------
    images : np.ndarray
        float32, shape (k, box, box), as stored (raw values, not normalised).
    pixel_size : float
        Å/px of the images.
    class_numbers : np.ndarray
        1-based class numbers, int64, shape (k,).
    resolution : np.ndarray
        Estimated resolution per class in Å, shape (k,) (999 or inf for empty classes).
    distribution : np.ndarray
        Fraction of particles per class, shape (k,).
    particle_count : np.ndarray
        Particles assigned per class, int64, shape (k,).
    source : Path or None
        Where the averages were read from.
    engine : str
        ``relion``, ``cryosparc`` or ``stack``.
    """

    images: np.ndarray
    pixel_size: float
    class_numbers: np.ndarray
    resolution: np.ndarray
    distribution: np.ndarray
    particle_count: np.ndarray
    source: Path | None = None
    engine: str = "relion"

    def __post_init__(self):
        k = len(self.images)
        for name in ("class_numbers", "resolution", "distribution", "particle_count"):
            value = np.asarray(getattr(self, name))
            if value.shape != (k,):
                raise InputError(self.source, f"{k} class images but {value.shape[0] if value.ndim else 0} values of {name}")
            setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def box(self) -> int:
        """Image side in px."""
        return int(self.images.shape[-1])

    def table(self) -> pd.DataFrame:
        """Per-class numbers as a DataFrame (one row per class)."""
        return pd.DataFrame({
            "class": self.class_numbers,
            "resolution_A": self.resolution,
            "distribution": self.distribution,
            "particles": self.particle_count,
        })
