"""Point-group symmetry operators for reconstruction (RELION axis conventions).

C1: identity. Cn: n-fold axis along z. Dn: Cn plus a two-fold axis along x.
Each operator S is a rotation matrix acting on map coordinates (x, y, z); a map with
symmetry satisfies V(S r) = V(r), so its Fourier transform does too.
"""

from __future__ import annotations

import re

import numpy as np

from cryosift.errors import InputError

_NAME = re.compile(r"^\s*([CcDd])\s*(\d+)\s*$")


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def symmetry_operators(symmetry: str = "C1") -> np.ndarray:
    """Rotation matrices of a point group.

    Parameters
    ----------
    symmetry : str
        ``C1``, ``Cn`` (n-fold along z) or ``Dn`` (n-fold along z, two-fold along x);
        case does not matter.

    Returns
    -------
    np.ndarray
        float64, shape (order, 3, 3); the identity comes first.

    Raises
    ------
    InputError
        For an unknown or malformed group name.
    """
    m = _NAME.match(str(symmetry))
    if not m or int(m.group(2)) < 1:
        raise InputError(None, f"unknown symmetry {symmetry!r} (expected C1, Cn or Dn, e.g. C4 or D2)")
    kind, n = m.group(1).upper(), int(m.group(2))
    cyclic = [_rot_z(2.0 * np.pi * j / n) for j in range(n)]
    if kind == "C":
        return np.stack(cyclic)
    flip_x = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x
    return np.stack(cyclic + [flip_x @ c for c in cyclic])


def symmetry_order(symmetry: str = "C1") -> int:
    """Number of operators in the group (1 for C1, n for Cn, 2n for Dn)."""
    return len(symmetry_operators(symmetry))


def expand_rotations(rotations: np.ndarray, symmetry: str = "C1") -> np.ndarray:
    """All symmetry-equivalent particle orientations.

    A particle seen with orientation A shows the same image as orientation A S^T for
    every operator S of a symmetric map, so inserting it at all of them imposes the
    symmetry on the reconstruction.

    Parameters
    ----------
    rotations : np.ndarray
        RELION rotation matrices, shape (n, 3, 3).
    symmetry : str
        Point group name (see :func:`symmetry_operators`).

    Returns
    -------
    np.ndarray
        Shape (n * order, 3, 3); rows i * order .. i * order + order - 1 belong to particle i.
    """
    ops = symmetry_operators(symmetry)
    rot = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    return np.einsum("nij,skj->nsik", rot, ops).reshape(-1, 3, 3)
