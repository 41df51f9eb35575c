"""Q-scores: how well a map resolves each atom of a model (Pintilie et al. 2020).

For every non-hydrogen atom the map is sampled at the atom and on spheres of radius
0.1 .. 2.0 Å around it, and correlated (Pearson, i.e. about the mean) with a Gaussian of
width sigma = 0.6 Å sampled at the same radii. On each sphere, points closer than 0.9 R to
any other atom are dropped; the sphere is re-sampled with 8, 10, 12, ... points until at
least 8 remain (up to 50 tries, else the sphere is skipped). The atom's own value enters
8 times. Map values are interpolated trilinearly. Residue Q is the mean of its atoms, the
model's Q the mean over atoms. The height and offset of the reference Gaussian do not
matter for a Pearson correlation, so only its shape is used.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import gemmi
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from cryosift.density import model_coordinates


def sphere_points(n: int) -> np.ndarray:
    """``n`` near-evenly spread points on the unit sphere (Saff & Kuijlaars spiral), shape (n, 3)."""
    if n == 1:
        return np.array([[0.0, 0.0, 1.0]])
    k = np.arange(n)
    h = -1.0 + 2.0 * k / (n - 1)
    polar = np.arccos(h)
    step = np.zeros(n)
    inner = slice(1, n - 1)
    step[inner] = 3.6 / np.sqrt(n * (1.0 - h[inner] ** 2))
    azimuth = np.mod(np.cumsum(step), 2.0 * np.pi)
    azimuth[-1] = 0.0
    return np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], axis=1)


def expected_qscore(resolution_A: float, sigma: float = 0.6, kind: str = "peak") -> float:
    """Q-score expected for protein at a map resolution (EMDB-wide fits by Pintilie et al.).

    Parameters
    ----------
    resolution_A : float
        Map resolution in Å.
    sigma : float
        Width of the reference Gaussian, 0.6 or 0.4 Å.
    kind : {"peak", "linear"}
        ``peak``: the cubic fit of 2025 (Acta Cryst D 81:410), meaningful to ~10 Å;
        ``linear``: the 2020 line (Nat Methods 17:328), which goes negative past ~6 Å.

    Returns
    -------
    float
        The expected mean Q (NaN for a non-finite resolution).
    """
    d = float(resolution_A)
    if not np.isfinite(d):
        return float("nan")
    if sigma not in (0.6, 0.4):
        raise ValueError("expected Q-scores are known for sigma 0.6 and 0.4 Å only")
    if kind == "linear":
        return -0.1775 * d + 1.1192 if sigma == 0.6 else -0.1866 * d + 1.1242
    if kind != "peak":
        raise ValueError(f"kind must be 'peak' or 'linear', not {kind!r}")
    if sigma == 0.6:
        return -0.0019064058 * d**3 + 0.0499875375 * d**2 - 0.4513945578 * d + 1.5361860733
    return -0.0016 * d**3 + 0.0434 * d**2 - 0.3956 * d + 1.3366 + 0.024


@dataclass
class QScores:
    """Q-scores of a model in a map.

    Attributes
    ----------
    atoms : pd.DataFrame
        One row per atom: ``chain``, ``residue_number``, ``insertion``, ``residue``,
        ``atom``, ``element``, ``x``, ``y``, ``z`` (Å) and ``q``.
    sigma : float
        Width of the reference Gaussian in Å.
    """

    atoms: pd.DataFrame
    sigma: float = 0.6

    @property
    def mean(self) -> float:
        """Model Q: mean over atoms (atoms without a score are left out)."""
        return float(np.nanmean(self.atoms["q"])) if len(self.atoms) else float("nan")

    def residues(self) -> pd.DataFrame:
        """One row per residue: chain, number, insertion code, name, mean and lowest atom Q, atom count."""
        keys = ["chain", "residue_number", "insertion", "residue"]
        grouped = self.atoms.groupby(keys, sort=False)["q"]
        table = grouped.agg(q="mean", q_min="min", atoms="size").reset_index()
        return table


def _atom_table(structure: gemmi.Structure) -> pd.DataFrame:
    rows = [(ch.name, r.seqid.num, r.seqid.icode.strip(), r.name, a.name, a.element.name)
            for ch in structure[0] for r in ch for a in r]
    table = pd.DataFrame(rows, columns=["chain", "residue_number", "insertion", "residue", "atom", "element"])
    xyz = model_coordinates(structure)
    table["x"], table["y"], table["z"] = (xyz[:, i] if len(xyz) else [] for i in range(3))
    return table


def _shell_points(xyz: np.ndarray, offsets: np.ndarray, distances: np.ndarray, radius: float, points: int,
                  tries: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept points of one sphere of every atom.

    A point c + R u is within 0.9 R of a neighbour at c + v (|v| = D) exactly when
    u . v/D > (0.19 R^2 + D^2) / (2 R D) =: tau, so with 4-vectors (u, 1) and (v/D, -tau)
    each try is one matrix product: a point is blocked where any product is positive.

    Returns
    -------
    owner : np.ndarray
        Atom index of each kept point, int64, shape (p,).
    position : np.ndarray
        Kept points (x, y, z) in Å, shape (p, 3).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = (0.19 * radius**2 + distances**2) / (2.0 * radius * distances)
        direction = offsets / distances[..., None]
    relevant = limit < 1.0  # caps that reach the sphere (padding has infinite distance)
    # Relevant neighbours first, so each block of atoms needs only as many rows as it uses.
    order = np.argsort(~relevant, axis=1, kind="stable")
    planes = np.concatenate([np.where(relevant[..., None], direction, 0.0),
                             np.where(relevant, -limit, -1e30)[..., None]], axis=2)
    planes = np.ascontiguousarray(np.take_along_axis(planes, order[..., None], axis=1).transpose(1, 0, 2),
                                  dtype=np.float32)  # (neighbour, atom, 4)
    n_relevant = relevant.sum(axis=1)
    pending = np.argsort(n_relevant, kind="stable")
    owners, positions = [], []
    for i in range(tries):
        if pending.size == 0:
            break
        unit = sphere_points(points + 2 * i)
        unit4 = np.hstack([unit, np.ones((len(unit), 1))]).astype(np.float32)
        finished = []
        for block in np.array_split(pending, max(1, pending.size // 2048)):
            rows = max(1, int(n_relevant[block].max()))
            dots = planes[:rows, block].reshape(-1, 4) @ unit4.T  # (rows * m, n)
            blocked = np.maximum.reduce(dots.reshape(rows, -1), axis=0).reshape(len(block), len(unit)) > 0
            free = ~blocked  # (m, n)
            done = free.sum(axis=1) >= points
            if done.any():
                a, p = np.nonzero(free & done[:, None])
                owners.append(block[a])
                positions.append(xyz[block[a]] + radius * unit[p])
                finished.append(block[done])
        if finished:
            pending = np.setdiff1d(pending, np.concatenate(finished), assume_unique=True)
    if not owners:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    return np.concatenate(owners), np.concatenate(positions)


def qscores(volume: np.ndarray, pixel_size: float, model, origin_A=(0.0, 0.0, 0.0), sigma: float = 0.6,
            points: int = 8, max_radius_A: float = 2.0, step_A: float = 0.1, tries: int = 50,
            workers: int | None = None) -> QScores:
    """Q-score of every atom of a model in a map.

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box), indexed [z, y, x].
    pixel_size : float
        Voxel size in Å.
    model : gemmi.Structure or np.ndarray
        The model in the map's frame (first model used, hydrogens should be removed), or
        atom positions (x, y, z) in Å, shape (n, 3).
    origin_A : sequence of 3 floats
        Position (x, y, z) in Å of voxel (0, 0, 0) (the MRC header origin).
    sigma : float
        Width of the reference Gaussian in Å.
    points : int
        Points needed on each sphere.
    max_radius_A, step_A : float
        Outermost sphere and spacing of the spheres, Å.
    tries : int
        Attempts per sphere (with 2 more points each time) before it is skipped.
    workers : int, optional
        Threads working on different spheres (default: torch's thread count, which
        ``cryosift ... -j`` sets).

    Returns
    -------
    QScores
    """
    if isinstance(model, gemmi.Structure):
        table = _atom_table(model)
    else:
        xyz_in = np.asarray(model, dtype=np.float64).reshape(-1, 3)
        table = pd.DataFrame({"chain": "", "residue_number": np.arange(1, len(xyz_in) + 1), "insertion": "",
                              "residue": "", "atom": "", "element": "", "x": xyz_in[:, 0], "y": xyz_in[:, 1],
                              "z": xyz_in[:, 2]})
    xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
    n = len(xyz)
    if n == 0:
        table["q"] = []
        return QScores(table, sigma)
    vol = np.asarray(volume, dtype=np.float64)
    radii = np.arange(1, int(round(max_radius_A / step_A)) + 1) * step_A
    # Every atom that could block a point of the largest sphere (within 1.9 R of the atom).
    tree = cKDTree(xyz)
    k = min(n, 32)
    while True:
        dist, idx = tree.query(xyz, k=k + 1, distance_upper_bound=1.9 * radii[-1])
        if k >= n - 1 or not np.isfinite(dist[:, -1]).any():
            break
        k = min(2 * k, n - 1)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop the atom itself (sorted first)
    padded = np.vstack([xyz, np.zeros((1, 3))])
    offsets = padded[idx] - xyz[:, None, :]
    owners = [np.repeat(np.arange(n), points)]
    positions = [np.repeat(xyz, points, axis=0)]
    shells = [np.zeros(n * points)]

    def one_shell(radius):
        # Neighbours are sorted by distance: only those within 1.9 R can block this sphere.
        cols = max(1, int((dist <= 1.9 * radius + 1e-9).sum(axis=1).max()))
        return _shell_points(xyz, offsets[:, :cols], dist[:, :cols], radius, points, tries)

    # Shells are independent and numpy releases the GIL in the heavy steps; big shells first.
    with ThreadPoolExecutor(max(1, workers or torch.get_num_threads())) as pool:
        done = dict(zip(radii[::-1], pool.map(one_shell, radii[::-1])))
    for radius in radii:
        own, pos = done[radius]
        owners.append(own)
        positions.append(pos)
        shells.append(np.full(len(own), radius))
    owner = np.concatenate(owners)
    pos = np.concatenate(positions)
    r = np.concatenate(shells)
    grid = (pos - np.asarray(origin_A, dtype=np.float64)) / pixel_size
    values = ndimage.map_coordinates(vol, grid[:, ::-1].T, order=1, mode="constant", cval=0.0, prefilter=False)
    values -= values.mean()  # Pearson ignores offsets; centring keeps the sums well conditioned
    ref = np.exp(-0.5 * (r / sigma) ** 2)
    table["q"] = _pearson_by_group(owner, values, ref, n)
    return QScores(table, sigma)


def _pearson_by_group(group: np.ndarray, a: np.ndarray, b: np.ndarray, n_groups: int) -> np.ndarray:
    """Pearson correlation of a and b within each group (NaN where undefined)."""
    def total(w):
        return np.bincount(group, weights=w, minlength=n_groups)
    cnt = total(np.ones_like(a))
    sa, sb = total(a), total(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = sa / cnt, sb / cnt
        cov = total(a * b) - cnt * ma * mb
        va = total(a * a) - cnt * ma * ma
        vb = total(b * b) - cnt * mb * mb
        return np.where((va > 0) & (vb > 0), cov / np.sqrt(va * vb), np.nan)
