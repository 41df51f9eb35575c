"""Rotation conventions: RELION ZYZ Euler angles and cryoSPARC rotation vectors.

RELION stores a particle's orientation as Euler angles (rot, tilt, psi) in degrees,
describing the matrix A = R_z(psi) R_y(tilt) R_z(rot) that rotates the map into the
particle's view. cryoSPARC stores the same orientation as a rotation vector (axis x
angle, radians) whose Rodrigues matrix is A transposed; this is the relation pyem's
csparc2star uses, so files converted either way agree with it.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

_EPS = np.finfo(np.float64).eps


def euler_to_matrix(rot, tilt, psi) -> np.ndarray:
    """RELION Euler angles to rotation matrices.

    Parameters
    ----------
    rot, tilt, psi : array_like
        Angles in degrees, broadcastable to shape (n,).

    Returns
    -------
    np.ndarray
        float64, shape (n, 3, 3).
    """
    a, b, g = (np.radians(np.atleast_1d(np.asarray(x, dtype=np.float64))) for x in (rot, tilt, psi))
    a, b, g = np.broadcast_arrays(a, b, g)
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    m = np.empty(a.shape + (3, 3))
    m[..., 0, 0] = cg * cb * ca - sg * sa
    m[..., 0, 1] = cg * cb * sa + sg * ca
    m[..., 0, 2] = -cg * sb
    m[..., 1, 0] = -sg * cb * ca - cg * sa
    m[..., 1, 1] = -sg * cb * sa + cg * ca
    m[..., 1, 2] = sg * sb
    m[..., 2, 0] = sb * ca
    m[..., 2, 1] = sb * sa
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation matrices to RELION Euler angles (degrees).

    Where tilt is 0 or 180 degrees only rot + psi (or psi - rot) is defined; rot is
    then set to 0, as RELION does.

    Parameters
    ----------
    m : np.ndarray
        Shape (n, 3, 3) or (3, 3).

    Returns
    -------
    rot, tilt, psi : np.ndarray
        Degrees, shape (n,); tilt in [0, 180].
    """
    m = np.asarray(m, dtype=np.float64).reshape(-1, 3, 3)
    sin_tilt = np.hypot(m[:, 0, 2], m[:, 1, 2])
    general = sin_tilt > 16 * _EPS
    rot = np.where(general, np.arctan2(m[:, 2, 1], m[:, 2, 0]), 0.0)
    psi_general = np.arctan2(m[:, 1, 2], -m[:, 0, 2])
    tilt_general = np.arctan2(sin_tilt, m[:, 2, 2])
    up = m[:, 2, 2] > 0
    psi_degenerate = np.where(up, np.arctan2(-m[:, 1, 0], m[:, 0, 0]), np.arctan2(m[:, 1, 0], -m[:, 0, 0]))
    tilt_degenerate = np.where(up, 0.0, np.pi)
    psi = np.where(general, psi_general, psi_degenerate)
    tilt = np.where(general, tilt_general, tilt_degenerate)
    return np.degrees(rot), np.degrees(tilt), np.degrees(psi)


def rotvec_to_euler(rotvec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cryoSPARC pose (rotation vector, radians, shape (n, 3)) to RELION Euler angles (degrees)."""
    rv = np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)
    return matrix_to_euler(Rotation.from_rotvec(-rv).as_matrix())


def euler_to_rotvec(rot, tilt, psi) -> np.ndarray:
    """RELION Euler angles (degrees) to cryoSPARC poses: rotation vectors in radians, shape (n, 3)."""
    return -Rotation.from_matrix(euler_to_matrix(rot, tilt, psi)).as_rotvec()


def angular_distance(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Angle in degrees of the rotation taking each m1 to m2, shape (n,)."""
    rel = np.einsum("nij,nkj->nik", np.asarray(m1).reshape(-1, 3, 3), np.asarray(m2).reshape(-1, 3, 3))
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    # arccos loses precision near 0; use the antisymmetric part there.
    sin = np.linalg.norm(rel - np.transpose(rel, (0, 2, 1)), axis=(1, 2)) / (2 * np.sqrt(2))
    return np.degrees(np.arctan2(sin, cos))
