"""ResLog: resolution against the number of particles, and the B-factor it implies.

Random subsets of increasing size are drawn within each gold-standard half set (nested,
so each subset contains the smaller ones), reconstructed with the particles' own poses,
and their half-map FSC read at 0.143. Rosenthal & Henderson (2003) give
ln N = B / (2 d^2) + const, so a line through 1/d^2 against ln N has slope 2 / B; Stagg et
al. (2014) plot 1/d against ln N instead, and that slope is reported too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.models import ParticleSet
from cryosift.validate.fsc import HALF_MAP_THRESHOLD, fsc_curve, resolution_at
from cryosift.validate.masks import soft_sphere_mask

log = logging.getLogger(__name__)


@dataclass
class ResLogFit:
    """Straight-line fits of a ResLog series.

    Attributes
    ----------
    particles : np.ndarray
        Particles per point (both half sets), int64, shape (n,).
    resolution_A : np.ndarray
        Half-map FSC 0.143 resolution per point, Å, shape (n,).
    used : np.ndarray
        Points that entered the fits (finite and coarser than 2.2 x pixel size), bool.
    slope : float
        d(1/d^2)/d(ln N), Å^-2.
    intercept : float
        1/d^2 at N = 1, Å^-2.
    b_factor_A2 : float
        2 / slope, Å^2 (NaN when the slope is not positive).
    stagg_slope : float
        d(1/d)/d(ln N), Å^-1 (the cryoSPARC/Stagg form).
    stagg_intercept : float
        1/d at N = 1, Å^-1.
    r_squared : float
        Coefficient of determination of the 1/d^2 fit.
    """

    particles: np.ndarray
    resolution_A: np.ndarray
    used: np.ndarray
    slope: float = float("nan")
    intercept: float = float("nan")
    b_factor_A2: float = float("nan")
    stagg_slope: float = float("nan")
    stagg_intercept: float = float("nan")
    r_squared: float = float("nan")

    def to_dict(self) -> dict:
        """JSON-ready summary with the points."""
        def num(v):
            return float(v) if np.isfinite(v) else None
        return {
            "points": [{"particles": int(n), "resolution_A": num(d), "used": bool(u)}
                       for n, d, u in zip(self.particles, self.resolution_A, self.used)],
            "b_factor_A2": num(self.b_factor_A2),
            "slope_inv_d2_per_ln_n": num(self.slope),
            "intercept_inv_d2": num(self.intercept),
            "stagg_slope_inv_d_per_ln_n": num(self.stagg_slope),
            "stagg_intercept_inv_d": num(self.stagg_intercept),
            "r_squared": num(self.r_squared),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ResLogFit":
        """Rebuild from :meth:`to_dict` output (as read back from JSON)."""
        pts = data.get("points", [])
        def val(v):
            return float("nan") if v is None else float(v)
        return cls(
            np.array([p["particles"] for p in pts], dtype=np.int64),
            np.array([val(p["resolution_A"]) for p in pts]),
            np.array([bool(p.get("used", True)) for p in pts], dtype=bool),
            val(data.get("slope_inv_d2_per_ln_n")), val(data.get("intercept_inv_d2")),
            val(data.get("b_factor_A2")), val(data.get("stagg_slope_inv_d_per_ln_n")),
            val(data.get("stagg_intercept_inv_d")), val(data.get("r_squared")),
        )


def fit_reslog(particles, resolution_A, pixel_size: float | None = None, min_points: int = 3) -> ResLogFit:
    """Fit 1/d^2 and 1/d against ln N; B = 2 / slope of the first.

    Parameters
    ----------
    particles : array_like
        Particle counts, shape (n,).
    resolution_A : array_like
        Resolutions in Å, shape (n,); non-finite values are left out.
    pixel_size : float, optional
        Voxel size in Å; points at 2.2 x pixel size or finer are limited by Nyquist and
        left out.
    min_points : int
        Fewer usable points than this give NaN fits.

    Returns
    -------
    ResLogFit
    """
    n = np.asarray(particles, dtype=np.int64)
    d = np.asarray(resolution_A, dtype=np.float64)
    used = np.isfinite(d) & (d > 0) & (n > 0)
    if pixel_size:
        used &= d > 2.2 * pixel_size
    fit = ResLogFit(n, d, used)
    if used.sum() < min_points or len(np.unique(n[used])) < 2:
        return fit
    x = np.log(n[used].astype(np.float64))
    y2 = 1.0 / d[used] ** 2
    fit.slope, fit.intercept = (float(v) for v in np.polyfit(x, y2, 1))
    fit.stagg_slope, fit.stagg_intercept = (float(v) for v in np.polyfit(x, 1.0 / d[used], 1))
    residual = y2 - (fit.slope * x + fit.intercept)
    spread = ((y2 - y2.mean()) ** 2).sum()
    fit.r_squared = float(1.0 - (residual**2).sum() / spread) if spread > 0 else float("nan")
    fit.b_factor_A2 = 2.0 / fit.slope if fit.slope > 0 else float("nan")
    return fit


def reslog_sizes(n_total: int, smallest: int = 100, max_points: int = 8) -> list[int]:
    """Subset sizes: all particles, then halving, down to ``smallest`` (ascending)."""
    sizes = []
    size = int(n_total)
    while size >= max(2, smallest) and len(sizes) < max_points:
        sizes.append(size)
        size //= 2
    return sorted(sizes)


def half_set_labels(pset: ParticleSet, seed: int = 0) -> np.ndarray:
    """Half set (1 or 2) of every particle: rlnRandomSubset, or a seeded random split if absent."""
    if "rlnRandomSubset" in pset.particles:
        halves = pset.particles["rlnRandomSubset"].to_numpy().astype(np.int64)
        if not np.isin(halves, (1, 2)).all():
            raise InputError(pset.source, "rlnRandomSubset must be 1 or 2 for every particle")
        return halves
    order = np.random.default_rng(seed).permutation(len(pset))
    halves = np.empty(len(pset), dtype=np.int64)
    halves[order] = np.arange(len(pset)) % 2 + 1
    return halves


def nested_subsets(halves: np.ndarray, sizes, seed: int = 0) -> list[np.ndarray]:
    """Row indices of nested random subsets drawn within each half set.

    Parameters
    ----------
    halves : np.ndarray
        Half set (1 or 2) per particle, shape (n,).
    sizes : sequence of int
        Particles wanted per subset (both halves together), ascending.
    seed : int
        Seed of the random order inside each half set.

    Returns
    -------
    list of np.ndarray
        Sorted row indices, one array per size; each half set contributes in proportion
        to its size, so both halves are always represented.
    """
    rng = np.random.default_rng(seed)
    members = {h: rng.permutation(np.flatnonzero(halves == h)) for h in (1, 2)}
    total = len(halves)
    out = []
    for size in sizes:
        take = []
        for h, rows in members.items():
            k = int(round(size * len(rows) / total))
            take.append(rows[:max(1, min(k, len(rows)))])
        out.append(np.sort(np.concatenate(take)))
    return out


def _default_reconstruction() -> Callable:
    import inspect
    from functools import partial

    from cryosift.reconstruct import reconstruct_half_maps

    if "wiener" in inspect.signature(reconstruct_half_maps).parameters:
        return partial(reconstruct_half_maps, wiener=False)
    return reconstruct_half_maps


@dataclass
class ResLogResult:
    """A ResLog series and its fits.

    Attributes
    ----------
    table : pd.DataFrame
        One row per subset: ``particles``, ``half1``, ``half2`` (counts) and
        ``resolution_A`` (half-map FSC 0.143, Å).
    fit : ResLogFit
    curves : list of pd.DataFrame
        The FSC curve of each subset (as :func:`cryosift.validate.fsc.fsc_curve`).
    """

    table: pd.DataFrame
    fit: ResLogFit
    curves: list = field(default_factory=list, repr=False)


def reslog(pset: ParticleSet, sizes=None, seed: int = 0, symmetry: str = "C1", mask=None, device=None,
           reconstruct: Callable | None = None, smallest: int = 100) -> ResLogResult:
    """Run a ResLog series on particles with poses.

    Parameters
    ----------
    pset : ParticleSet
        Particles with poses (rlnAngleRot/Tilt/Psi, origins) and ideally rlnRandomSubset.
    sizes : sequence of int, optional
        Subset sizes; default :func:`reslog_sizes` of the set.
    seed : int
        Seed of the subsets (and of the half split when rlnRandomSubset is missing).
    symmetry : str
        Point group of the reconstructions.
    mask : np.ndarray, optional
        Mask for the FSC, shape (box, box, box); default a soft sphere.
    device : str or torch.device, optional
        Passed to the reconstruction.
    reconstruct : callable, optional
        ``reconstruct(pset, symmetry=, device=) -> (half1, half2, full)``; default
        :func:`cryosift.reconstruct.reconstruct_half_maps` without its FSC-based Wiener
        filter, so each half is an independent CTF-weighted average and their FSC is
        the plain gold-standard one.
    smallest : int
        Smallest default subset.

    Returns
    -------
    ResLogResult
    """
    pset.require(["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"], "ResLog (reconstruction with known poses)")
    if reconstruct is None:
        reconstruct = _default_reconstruction()
    pixel_size = pset.common_pixel_size()
    halves = half_set_labels(pset, seed)
    particles = pset.particles.copy()
    particles["rlnRandomSubset"] = halves
    labelled = ParticleSet(particles, pset.optics, pset.source, pset.extra)
    sizes = reslog_sizes(len(pset), smallest) if sizes is None else sorted(int(s) for s in sizes)
    rows_per_size = nested_subsets(halves, sizes, seed)
    records, curves = [], []
    for rows in rows_per_size:
        sub = labelled.subset(rows)
        half1, half2, _ = reconstruct(sub, symmetry=symmetry, device=device)
        m = soft_sphere_mask(half1.shape[0]) if mask is None else mask
        curve = fsc_curve(half1, half2, pixel_size, m)
        d = resolution_at(curve, HALF_MAP_THRESHOLD)
        h = halves[rows]
        records.append({"particles": len(rows), "half1": int((h == 1).sum()), "half2": int((h == 2).sum()),
                        "resolution_A": d})
        curves.append(curve)
        log.info("ResLog: %d particles -> %.2f Å", len(rows), d)
    table = pd.DataFrame(records)
    fit = fit_reslog(table["particles"], table["resolution_A"], pixel_size)
    return ResLogResult(table, fit, curves)
