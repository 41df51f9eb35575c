"""Operations on cubic maps that alignment and validation share.

Positions inside a map are "centred coordinates": (x, y, z) in Å measured from voxel
box // 2 along each axis (the rotation centre RELION and cryoSPARC use). A map's absolute
frame adds its MRC header origin: voxel (z, y, x) lies at origin + (x, y, z) x pixel size.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage
from scipy.spatial.transform import Rotation

# Second constant of the super-Fibonacci spiral on S^3 (Alexa 2022), with sqrt(2) the first.
_SF_PSI = 1.533751168755204288118041


def rotation_grid(step_deg: float) -> np.ndarray:
    """Near-uniform rotations covering SO(3) at about ``step_deg`` spacing.

    Uses a super-Fibonacci spiral of unit quaternions (Alexa 2022); n = 8 pi^2 / step^3
    rotations leave no rotation farther than about 0.9 x step from its nearest neighbour.

    Parameters
    ----------
    step_deg : float
        Sampling step in degrees.

    Returns
    -------
    np.ndarray
        float64, shape (n, 3, 3), deterministic for a given step.
    """
    n = max(1, int(np.ceil(8.0 * np.pi**2 / np.radians(step_deg) ** 3)))
    s = np.arange(n) + 0.5
    r, big_r = np.sqrt(s / n), np.sqrt(1.0 - s / n)
    alpha, beta = 2.0 * np.pi * s / np.sqrt(2.0), 2.0 * np.pi * s / _SF_PSI
    quats = np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], axis=1)
    return Rotation.from_quat(quats).as_matrix()


def centred_positions(box: int) -> np.ndarray:
    """Centred coordinates (x, y, z) in voxels of every voxel, float64, shape (box, box, box, 3), [z, y, x]."""
    ax = np.arange(box, dtype=np.float64) - box // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    return np.stack([x, y, z], axis=-1)


def mirror_map(volume: np.ndarray) -> np.ndarray:
    """Mirror a map through the plane z = 0 of centred coordinates (the other hand).

    Voxel z goes to 2 (box // 2) - z, so the centre voxel stays in place and no
    interpolation is involved (one edge plane wraps around for even boxes).

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box), indexed [z, y, x].

    Returns
    -------
    np.ndarray
        Same shape and dtype.
    """
    vol = np.asarray(volume)
    box = vol.shape[0]
    return np.roll(vol[::-1], 2 * (box // 2) - (box - 1), axis=0)


def fourier_shift(volume: np.ndarray, shift_vox) -> np.ndarray:
    """Translate a map by a (sub-)voxel amount with a Fourier phase ramp (periodic).

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box), indexed [z, y, x].
    shift_vox : sequence of 3 floats
        Shift (x, y, z) in voxels: the output at p equals the input at p - shift.

    Returns
    -------
    np.ndarray
        float64, same shape.
    """
    vol = np.asarray(volume, dtype=np.float64)
    box = vol.shape[0]
    k = np.fft.fftfreq(box)
    kx = np.fft.rfftfreq(box)
    sx, sy, sz = (float(v) for v in shift_vox)
    phase = np.exp(-2j * np.pi * (kx[None, None, :] * sx + k[None, :, None] * sy + k[:, None, None] * sz))
    return scipy.fft.irfftn(scipy.fft.rfftn(vol, workers=-1) * phase, s=vol.shape, workers=-1)


def fourier_crop_volume(volume: np.ndarray, new_box: int) -> np.ndarray:
    """Downsample a map by cropping its Fourier transform, keeping the centre voxel's position.

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box).
    new_box : int
        Output side in voxels (<= box); the new voxel size is pixel size x box / new_box.

    Returns
    -------
    np.ndarray
        float64, shape (new_box, new_box, new_box), same mean value; centred coordinates
        (in Å) of the input and output agree.
    """
    vol = np.asarray(volume, dtype=np.float64)
    box = vol.shape[0]
    if new_box >= box:
        return vol.copy()
    ft = np.fft.fftshift(scipy.fft.fftn(vol, workers=-1))
    lo = box // 2 - new_box // 2
    ft = ft[lo:lo + new_box, lo:lo + new_box, lo:lo + new_box]
    out = scipy.fft.ifftn(np.fft.ifftshift(ft), workers=-1).real * (new_box / box) ** 3
    # Sample 0 stays at position 0, so the centre voxel moves unless both boxes are even.
    offset = (box // 2) * new_box / box - new_box // 2
    if abs(offset) > 1e-9:
        out = fourier_shift(out, (-offset,) * 3)
    return out


def resample_map(volume: np.ndarray, rotation: np.ndarray, shift_A, pixel_size: float, order: int = 3) -> np.ndarray:
    """Rotate a map about its centre and translate it: out(x) = volume(R^T (x - t)).

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box), indexed [z, y, x].
    rotation : np.ndarray
        R, shape (3, 3), acting on centred (x, y, z) coordinates.
    shift_A : sequence of 3 floats
        t, (x, y, z) in Å.
    pixel_size : float
        Voxel size in Å.
    order : int
        Spline order of the interpolation (3: cubic, 1: trilinear).

    Returns
    -------
    np.ndarray
        float32, same shape; points that come from outside the box take the nearest
        edge value.
    """
    vol = np.asarray(volume, dtype=np.float32)
    box = vol.shape[0]
    x = centred_positions(box).reshape(-1, 3) - np.asarray(shift_A, dtype=np.float64) / pixel_size
    src = x @ np.asarray(rotation, dtype=np.float64) + box // 2  # rows: R^T (x - t)
    coords = src[:, ::-1].T  # (z, y, x) for map_coordinates
    out = ndimage.map_coordinates(vol, coords, order=order, mode="nearest", prefilter=order > 1)
    return out.reshape(vol.shape).astype(np.float32)
