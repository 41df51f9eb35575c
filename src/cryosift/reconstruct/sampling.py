"""Orientation and translation grids for pose search (coarse global grids, local refinements)."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from cryosift.io.rotations import euler_to_matrix


def sphere_directions(step_deg: float) -> np.ndarray:
    """Near-uniform viewing directions (Fibonacci sphere) about ``step_deg`` apart.

    Returns
    -------
    np.ndarray
        (rot, tilt) in degrees, shape (m, 2), m ~ 4 pi / step^2.
    """
    step = math.radians(step_deg)
    m = max(2, int(round(4.0 * math.pi / (step * step))))
    i = np.arange(m) + 0.5
    tilt = np.degrees(np.arccos(1.0 - 2.0 * i / m))
    rot = np.degrees((np.pi * (1.0 + 5.0**0.5) * i) % (2.0 * np.pi))
    return np.stack([rot, tilt], axis=1)


def so3_grid(step_deg: float) -> np.ndarray:
    """A global grid of orientations: directions ``step_deg`` apart times in-plane angles ``step_deg`` apart.

    Parameters
    ----------
    step_deg : float
        Angular spacing in degrees (15 gives ~4,400 orientations, 7.5 ~35,000).

    Returns
    -------
    np.ndarray
        RELION rotation matrices, float64, shape (n, 3, 3).
    """
    dirs = sphere_directions(step_deg)
    n_psi = max(1, int(round(360.0 / step_deg)))
    psi = np.arange(n_psi) * 360.0 / n_psi
    rot = np.repeat(dirs[:, 0], n_psi)
    tilt = np.repeat(dirs[:, 1], n_psi)
    return euler_to_matrix(rot, tilt, np.tile(psi, len(dirs)))


def local_offsets(step_deg: float) -> np.ndarray:
    """Small rotations around the identity for local refinement: a 3x3x3 rotation-vector grid.

    Parameters
    ----------
    step_deg : float
        Spacing of the grid in degrees (the identity is included).

    Returns
    -------
    np.ndarray
        Rotation matrices, float64, shape (27, 3, 3); the identity first.
    """
    s = math.radians(step_deg)
    g = np.array([0.0, -s, s])
    vec = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return Rotation.from_rotvec(vec).as_matrix()


def shift_grid(max_shift_px: float, step_px: float) -> np.ndarray:
    """Translations on a square grid within a circle.

    Parameters
    ----------
    max_shift_px : float
        Radius of the search in px.
    step_px : float
        Grid spacing in px.

    Returns
    -------
    np.ndarray
        (x, y) shifts in px, float64, shape (m, 2); (0, 0) first.
    """
    if max_shift_px <= 0 or step_px <= 0:
        return np.zeros((1, 2))
    k = int(math.floor(max_shift_px / step_px + 1e-9))
    g = np.arange(-k, k + 1) * step_px
    xy = np.stack(np.meshgrid(g, g, indexing="xy"), axis=-1).reshape(-1, 2)
    xy = xy[np.hypot(xy[:, 0], xy[:, 1]) <= max_shift_px + 1e-9]
    order = np.argsort(np.hypot(xy[:, 0], xy[:, 1]), kind="stable")
    return xy[order]
