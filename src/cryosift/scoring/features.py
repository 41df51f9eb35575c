"""The six per-class features CryoSift feeds beside the image.

In order: estimated resolution (Å), class distribution (fraction of the job's particles),
pixel size (Å/px), and the class mass's absolute deviation from the mean, median and mode
of the masses over all classes of the job (kDa, see :mod:`cryosift.scoring.mass`).

Each model records how its features are scaled (:class:`FeatureSpec`): the published
model uses the raw values with non-finite resolutions (empty classes) set to 999 Å and
the mass deviations clipped at 1e9 and multiplied by 1e-8; our models may scale the
resolution and pixel size and use mass deviations relative to the job's median mass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.models import NO_RESOLUTION, ClassAverages
from cryosift.scoring.mass import estimate_mass, mass_deviations

#: Column names of the features in the order the network takes them.
FEATURE_NAMES = ("resolution_A", "distribution", "pixel_size_A", "mass_dmean_kDa", "mass_dmedian_kDa", "mass_dmode_kDa")


@dataclass(frozen=True)
class FeatureSpec:
    """How raw features become network input.

    Attributes
    ----------
    scale : tuple of 6 float
        Multiplier per feature (in :data:`FEATURE_NAMES` order), applied last.
    resolution_fill : float
        Å used for classes whose resolution is not finite (empty classes: inf, NaN).
    mass_clip : float or None
        Upper clip of the mass deviations before scaling.
    mass_deviation : {"absolute", "relative"}
        Absolute deviations in kDa, or divided by the job's median |mass|.
    """

    scale: tuple = (1.0, 1.0, 1.0, 1e-8, 1e-8, 1e-8)
    resolution_fill: float = NO_RESOLUTION
    mass_clip: float | None = 1e9
    mass_deviation: str = "absolute"

    def __post_init__(self):
        if len(self.scale) != len(FEATURE_NAMES):
            raise ValueError(f"feature scale needs {len(FEATURE_NAMES)} values, got {len(self.scale)}")
        if self.mass_deviation not in ("absolute", "relative"):
            raise ValueError(f"unknown mass deviation {self.mass_deviation!r} (absolute or relative)")
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        keys = ("scale", "resolution_fill", "mass_clip", "mass_deviation")
        return cls(**{k: (tuple(d[k]) if k == "scale" else d[k]) for k in keys if k in d})


#: Feature scaling of the published CryoSift model.
PUBLISHED_FEATURES = FeatureSpec()
#: Default feature scaling for models we train: values of order 1.
DEFAULT_FEATURES = FeatureSpec(scale=(0.01, 1.0, 0.1, 1.0, 1.0, 1.0), mass_clip=None, mass_deviation="relative")


def class_features(classes: ClassAverages) -> pd.DataFrame:
    """Raw per-class numbers: the six features plus the estimated mass.

    Parameters
    ----------
    classes : ClassAverages
        One job's class averages.

    Returns
    -------
    pd.DataFrame
        One row per class: ``class`` (1-based), ``resolution_A`` (as stored, inf/NaN kept),
        ``distribution``, ``pixel_size_A``, ``mass_kDa``, ``mass_dmean_kDa``,
        ``mass_dmedian_kDa``, ``mass_dmode_kDa``, ``particles``.
    """
    images = np.asarray(classes.images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise InputError(classes.source, f"class averages must be square images, got shape {images.shape}")
    bad = ~np.isfinite(images).all(axis=(1, 2))
    if bad.any():
        numbers = ", ".join(str(int(c)) for c in np.asarray(classes.class_numbers)[bad][:10])
        raise InputError(classes.source, f"class average(s) {numbers} contain NaN or infinite pixel values")
    if not classes.pixel_size > 0:
        raise InputError(classes.source, f"pixel size must be positive, got {classes.pixel_size}")
    try:
        mass = estimate_mass(images, classes.pixel_size)
    except ValueError as exc:
        raise InputError(classes.source, str(exc)) from None
    dev = mass_deviations(mass)
    return pd.DataFrame({
        "class": np.asarray(classes.class_numbers, dtype=np.int64),
        "resolution_A": np.asarray(classes.resolution, dtype=np.float64),
        "distribution": np.asarray(classes.distribution, dtype=np.float64),
        "pixel_size_A": np.full(len(images), float(classes.pixel_size)),
        "mass_kDa": mass,
        "mass_dmean_kDa": dev["dmean"],
        "mass_dmedian_kDa": dev["dmedian"],
        "mass_dmode_kDa": dev["dmode"],
        "particles": np.asarray(classes.particle_count, dtype=np.int64),
    })


def filled_resolution(resolution, fill: float = NO_RESOLUTION) -> np.ndarray:
    """Resolution in Å with non-finite values (empty classes) replaced by ``fill``."""
    res = np.asarray(resolution, dtype=np.float64)
    return np.where(np.isfinite(res), res, fill)


def feature_matrix(table: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Network features from :func:`class_features` output.

    Parameters
    ----------
    table : pd.DataFrame
        Output of :func:`class_features` (one job).
    spec : FeatureSpec
        The model's feature scaling.

    Returns
    -------
    np.ndarray
        float32, shape (k, 6), columns in :data:`FEATURE_NAMES` order.
    """
    cols = [filled_resolution(table["resolution_A"], spec.resolution_fill),
            table["distribution"].to_numpy(np.float64),
            table["pixel_size_A"].to_numpy(np.float64)]
    dev = table[["mass_dmean_kDa", "mass_dmedian_kDa", "mass_dmode_kDa"]].to_numpy(np.float64)
    if spec.mass_deviation == "relative":
        ref = float(np.median(np.abs(table["mass_kDa"].to_numpy(np.float64)))) if len(table) else 0.0
        dev = dev / ref if ref > 0 else np.zeros_like(dev)
    if spec.mass_clip is not None:
        dev = np.minimum(dev, spec.mass_clip)
    out = np.column_stack(cols + [dev[:, i] for i in range(3)]) * np.asarray(spec.scale)[None, :]
    return out.astype(np.float32)
