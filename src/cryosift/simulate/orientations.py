"""Particle orientations: uniform over SO(3), biased toward a preferred view, or a few distinct views.

A particle's orientation is given as RELION Euler angles (rot, tilt, psi) in degrees.
Its viewing direction in the map's frame is the unit vector
(sin tilt cos rot, sin tilt sin rot, cos tilt), the third row of the rotation matrix;
psi is the in-plane rotation. A uniform direction with a uniform psi is a Haar-uniform
rotation.
"""

from __future__ import annotations

import numpy as np

MODES = ("uniform", "preferred", "views")


def direction_from_angles(rot, tilt) -> np.ndarray:
    """Unit viewing directions from rot and tilt (degrees), shape (n, 3)."""
    r, t = np.radians(np.atleast_1d(rot)), np.radians(np.atleast_1d(tilt))
    return np.stack([np.sin(t) * np.cos(r), np.sin(t) * np.sin(r), np.cos(t)], axis=-1)


def angles_from_direction(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rot and tilt (degrees) of unit viewing directions (shape (n, 3))."""
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    tilt = np.degrees(np.arccos(np.clip(v[:, 2], -1.0, 1.0)))
    rot = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    return rot, tilt


def uniform_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Directions uniform on the sphere, shape (n, 3)."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def von_mises_fisher(rng: np.random.Generator, n: int, mean: np.ndarray, kappa: float) -> np.ndarray:
    """Directions from the von Mises-Fisher distribution on the sphere, shape (n, 3).

    Parameters
    ----------
    mean : np.ndarray
        Mean direction, shape (3,).
    kappa : float
        Concentration; 0 is uniform, 10 keeps most directions within about 25 degrees.
    """
    if kappa <= 0:
        return uniform_directions(rng, n)
    mean = np.asarray(mean, dtype=np.float64) / np.linalg.norm(mean)
    u = rng.uniform(size=n)
    # Inverse CDF of w = cos(angle to the mean), stable for large kappa.
    w = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    trial = np.array([1.0, 0.0, 0.0]) if abs(mean[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(mean, trial)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(mean, e1)
    s = np.sqrt(np.clip(1.0 - w**2, 0.0, None))
    return w[:, None] * mean + s[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)


def spread_directions(k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """k well-separated directions (a Fibonacci sphere, randomly turned when ``rng`` is given), shape (k, 3)."""
    i = np.arange(k) + 0.5
    z = 1.0 - 2.0 * i / k
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    r = np.sqrt(1.0 - z**2)
    v = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    if rng is not None:
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        v = v @ (q * np.sign(np.linalg.det(q))).T
    return v


def nearest_view(directions: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Index of the closest of ``views`` (k, 3) for each direction (n, 3), int64 shape (n,)."""
    return np.argmax(directions @ views.T, axis=1).astype(np.int64)


def draw_orientations(mode: str, n: int, rng: np.random.Generator, n_views: int = 0, views=None,
                      preferred_direction=(0.0, 0.0), preferred_strength: float = 4.0) -> dict:
    """Draw particle orientations.

    Parameters
    ----------
    mode : {"uniform", "preferred", "views"}
        ``uniform``: Haar-uniform rotations. ``preferred``: viewing directions from a
        von Mises-Fisher distribution around ``preferred_direction`` with concentration
        ``preferred_strength``. ``views``: each particle takes one of ``n_views`` fixed
        (rot, tilt) views (or the explicit ``views``), equally often.
    n : int
        Number of particles.
    rng : np.random.Generator
    n_views : int
        Number of distinct views. In the other modes, when positive, each particle is
        labelled with the nearest of that many spread directions.
    views : sequence of (rot, tilt), optional
        Explicit views in degrees (``views`` mode).
    preferred_direction : (rot, tilt)
        Degrees.
    preferred_strength : float
        von Mises-Fisher concentration (0 = uniform).

    Returns
    -------
    dict
        ``rot``, ``tilt``, ``psi`` (degrees, float64, shape (n,)) and ``view`` (int64,
        shape (n,), -1 where no views are defined).
    """
    if mode not in MODES:
        raise ValueError(f"orientations must be one of {', '.join(MODES)}, not {mode!r}")
    ref = None
    if views is not None and len(views):
        ref = direction_from_angles(*np.asarray(views, dtype=np.float64).T)
    elif n_views > 0:
        ref = spread_directions(n_views, rng)
    if mode == "views":
        if ref is None:
            raise ValueError("views mode needs n_views > 0 or explicit views")
        view = rng.permutation(np.arange(n) % len(ref)).astype(np.int64)
        directions = ref[view]
    else:
        if mode == "uniform":
            directions = uniform_directions(rng, n)
        else:
            directions = von_mises_fisher(rng, n, direction_from_angles(*preferred_direction)[0], preferred_strength)
        view = nearest_view(directions, ref) if ref is not None else np.full(n, -1, dtype=np.int64)
    rot, tilt = angles_from_direction(directions)
    psi = rng.uniform(-180.0, 180.0, size=n)
    return {"rot": rot, "tilt": tilt, "psi": psi, "view": view}
