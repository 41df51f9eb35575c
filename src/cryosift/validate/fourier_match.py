"""Correlating two maps in Fourier space over rotations and translations (torch, any device).

A map is held as its 2x-oversampled Fourier transform, so the transform of the map rotated
by R is read at R^T k with trilinear interpolation, and a translation t is a phase ramp.
Only the Fourier voxels k with 1 <= |k| <= radius (a ball, one half of it) take part, which
makes one rotation cost a few thousand samples instead of a whole rotated map.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def ball_frequencies(radius: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequencies of the half ball 1 <= |k| <= radius, kx >= 0.

    Returns
    -------
    k : torch.Tensor
        float32, shape (m, 3), (kx, ky, kz) in cycles per box.
    weight : torch.Tensor
        float32, shape (m,): 2 where kx > 0 (the Friedel mate is implied), else 1.
    """
    r = int(math.floor(radius))
    ax = np.arange(-r, r + 1)
    kz, ky, kx = np.meshgrid(ax, ax, np.arange(0, r + 1), indexing="ij")
    k = np.stack([kx.ravel(), ky.ravel(), kz.ravel()], axis=1).astype(np.float32)
    r2 = (k**2).sum(axis=1)
    k = k[(r2 >= 1) & (r2 <= radius**2)]
    weight = np.where(k[:, 0] > 0, 2.0, 1.0).astype(np.float32)
    return torch.as_tensor(k, device=device), torch.as_tensor(weight, device=device)


class OversampledTransform:
    """The Fourier transform of a map about its centre voxel, 2x oversampled.

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (n, n, n), indexed [z, y, x], centre at voxel n // 2.
    device : torch.device, optional
        Where the transform lives.
    """

    def __init__(self, volume: np.ndarray, device=None):
        vol = torch.as_tensor(np.asarray(volume, dtype=np.float32), device=device)
        n = vol.shape[0]
        big = 2 * n
        padded = torch.zeros((big, big, big), dtype=torch.float32, device=vol.device)
        o = big // 2 - n // 2
        padded[o:o + n, o:o + n, o:o + n] = vol
        ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(padded)))
        self._ft = torch.stack([ft.real, ft.imag])[None]  # (1, 2, big, big, big), DC at big // 2
        self.box = n
        self._big = big
        self.device = vol.device

    def sample(self, k: torch.Tensor, rotations: torch.Tensor | None = None) -> torch.Tensor:
        """Transform values F(R^T k).

        Parameters
        ----------
        k : torch.Tensor
            Frequencies (kx, ky, kz) in cycles per box, shape (m, 3).
        rotations : torch.Tensor, optional
            Shape (b, 3, 3); identity when omitted.

        Returns
        -------
        torch.Tensor
            complex64, shape (b, m) (b = 1 without rotations).
        """
        pts = k[None] if rotations is None else torch.matmul(k, rotations.to(k.dtype))  # rows R^T k
        grid = (2.0 * pts + self._big // 2) * (2.0 / (self._big - 1)) - 1.0
        b, m = grid.shape[:2]
        # All rotations as one batch of points: one fused trilinear pass.
        vals = torch.nn.functional.grid_sample(self._ft, grid.reshape(1, 1, b, m, 3), mode="bilinear",
                                               padding_mode="zeros", align_corners=True)[0, :, 0]
        return torch.complex(vals[0], vals[1])


def translation_search(f_ref: torch.Tensor, f_rot: torch.Tensor, k: torch.Tensor, weight: torch.Tensor,
                       box: int, max_shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Best translation for each rotated map by one inverse FFT of the cross-power.

    Parameters
    ----------
    f_ref : torch.Tensor
        Reference transform on the half ball, complex, shape (m,).
    f_rot : torch.Tensor
        Rotated maps' transforms, complex, shape (b, m).
    k, weight : torch.Tensor
        From :func:`ball_frequencies`.
    box : int
        Side of the maps in voxels.
    max_shift : float
        Largest translation searched along each axis, in voxels.

    Returns
    -------
    score : torch.Tensor
        Normalised correlation at the best translation, shape (b,).
    shift : torch.Tensor
        That translation (x, y, z) in voxels, shape (b, 3).
    """
    radius = int(k.abs().max().item())
    c = 2 * radius + 2  # the cross-power is band-limited, so a small grid holds it
    b = f_rot.shape[0]
    ki = k.round().long()
    flat = ((ki[:, 2] % c) * c + (ki[:, 1] % c)) * (c // 2 + 1) + ki[:, 0]
    cross = torch.zeros((b, c * c * (c // 2 + 1)), dtype=f_rot.dtype, device=f_rot.device)
    cross[:, flat] = f_ref[None] * f_rot.conj()
    cc = torch.fft.irfftn(cross.reshape(b, c, c, c // 2 + 1), s=(c, c, c), dim=(-3, -2, -1)) * c**3
    norm = torch.sqrt((weight * f_ref.abs() ** 2).sum() * (weight * f_rot.abs() ** 2).sum(dim=1))
    step = box / c
    lag = torch.fft.fftfreq(c, d=1.0 / c, device=cc.device) * step  # voxels per grid step
    allowed = lag.abs() <= max_shift
    allowed3 = allowed[:, None, None] & allowed[None, :, None] & allowed[None, None, :]
    cc = cc.masked_fill(~allowed3, -torch.inf).reshape(b, -1)
    best, idx = cc.max(dim=1)
    iz, rem = idx // (c * c), idx % (c * c)
    iy, ix = rem // c, rem % c
    shift = torch.stack([lag[ix], lag[iy], lag[iz]], dim=1)
    return best / norm.clamp_min(1e-30), shift


def correlation(f_ref: torch.Tensor, f_rot: torch.Tensor, k: torch.Tensor, weight: torch.Tensor,
                shift: torch.Tensor, box: int) -> torch.Tensor:
    """Normalised correlation of the reference with rotated maps translated by ``shift`` voxels.

    Parameters
    ----------
    f_ref : torch.Tensor
        complex, shape (m,).
    f_rot : torch.Tensor
        complex, shape (b, m): F(R^T k) of the moving map.
    k, weight : torch.Tensor
        From :func:`ball_frequencies`.
    shift : torch.Tensor
        (x, y, z) in voxels, shape (b, 3).
    box : int
        Side of the maps in voxels.

    Returns
    -------
    torch.Tensor
        Shape (b,), in [-1, 1]; differentiable in ``f_rot`` and ``shift``.
    """
    phase = 2.0 * math.pi * (shift.to(k.dtype) @ k.T) / box  # (b, m)
    cross = f_ref[None] * f_rot.conj() * torch.polar(torch.ones_like(phase), phase)
    num = (weight * cross.real).sum(dim=1)
    norm = torch.sqrt((weight * f_ref.abs() ** 2).sum() * (weight * f_rot.abs() ** 2).sum(dim=1))
    return num / norm.clamp_min(1e-30)


def shell_correlation(f_ref: torch.Tensor, f_mov: torch.Tensor, k: torch.Tensor, weight: torch.Tensor,
                      shift: torch.Tensor, box: int) -> np.ndarray:
    """Correlation per Fourier shell round(|k|) of the reference and a moved map.

    Parameters
    ----------
    f_ref, f_mov : torch.Tensor
        complex, shape (m,): F_ref(k) and F_mov(R^T k).
    k, weight : torch.Tensor
        From :func:`ball_frequencies`.
    shift : torch.Tensor
        (x, y, z) in voxels, shape (3,).
    box : int
        Side of the maps in voxels.

    Returns
    -------
    np.ndarray
        float64, shape (max shell + 1,); shell 0 is 0.
    """
    phase = 2.0 * math.pi * (k @ shift.to(k.dtype)) / box
    cross = (weight * (f_ref * f_mov.conj() * torch.polar(torch.ones_like(phase), phase)).real).double()
    shell = torch.round(torch.linalg.vector_norm(k, dim=1)).long()
    n = int(shell.max()) + 1
    num = torch.zeros(n, dtype=torch.float64, device=k.device).index_add_(0, shell, cross)
    p1 = torch.zeros_like(num).index_add_(0, shell, (weight * f_ref.abs() ** 2).double())
    p2 = torch.zeros_like(num).index_add_(0, shell, (weight * f_mov.abs() ** 2).double())
    out = (num / torch.sqrt(p1 * p2).clamp_min(1e-30)).cpu().numpy()
    out[0] = 0.0
    return out


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a rotation vector (radians), differentiable; shape (3,) -> (3, 3)."""
    zero = torch.zeros((), dtype=rotvec.dtype, device=rotvec.device)
    wx, wy, wz = rotvec
    skew = torch.stack([torch.stack([zero, -wz, wy]), torch.stack([wz, zero, -wx]), torch.stack([-wy, wx, zero])])
    return torch.linalg.matrix_exp(skew)
