"""Sampling grids: Fourier coefficients inside the current resolution, in-plane angles, offsets, masks.

Fourier coefficients are those of ``torch.fft.rfft2`` (norm="forward") of an image whose
phase origin is pixel box // 2, RELION's centre. Of the half plane only independent
coefficients are kept: kx > 0, or kx = 0 with ky >= 0 (the other half of the kx = 0 column
holds their complex conjugates). Frequencies are in px^-1 x box ("shells"): shell
s = round(|k|) lies at s / (box x pixel size) Å^-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryosift.fourier import shell_index
from cryosift.masks import soft_disc


@dataclass
class Coefficients:
    """Independent half-plane Fourier coefficients with shell index below ``radius``.

    Attributes
    ----------
    box : int
        Image side in px.
    radius : int
        Shells 0 .. radius - 1 are included.
    index : torch.Tensor
        int64, shape (m,): flat index into the (box, box // 2 + 1) half plane.
    ky, kx : torch.Tensor
        float32, shape (m,): frequencies in px^-1 x box.
    shell : torch.Tensor
        int64, shape (m,): round(|k|).
    """

    box: int
    radius: int
    index: torch.Tensor
    ky: torch.Tensor
    kx: torch.Tensor
    shell: torch.Tensor

    @property
    def m(self) -> int:
        return int(self.index.numel())

    def gather(self, half_plane: torch.Tensor) -> torch.Tensor:
        """Pick the coefficients from half-plane arrays of shape (..., box, box // 2 + 1) -> (..., m)."""
        return half_plane.reshape(*half_plane.shape[:-2], -1)[..., self.index]


def half_plane_shells(box: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shell index and independence mask of every half-plane coefficient, shapes (box, box // 2 + 1)."""
    ky = torch.fft.fftfreq(box, d=1.0 / box, device=device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(box, d=1.0 / box, device=device, dtype=torch.float64)
    gy, gx = torch.meshgrid(ky, kx, indexing="ij")
    independent = (gx > 0) | (gy >= 0)
    return shell_index(box, 2, tensor=True, device=device), independent


def coefficients(box: int, radius: int, device=None) -> Coefficients:
    """The independent coefficients of shells 0 .. radius - 1 (radius <= box // 2), sorted by shell."""
    radius = int(min(max(radius, 1), box // 2))
    shell, independent = half_plane_shells(box, device)
    keep = independent & (shell < radius)
    flat = torch.nonzero(keep.reshape(-1)).reshape(-1)
    flat_shell = shell.reshape(-1)[flat]
    order = torch.argsort(flat_shell * flat.numel() + torch.arange(flat.numel(), device=flat.device))
    flat, flat_shell = flat[order], flat_shell[order]
    width = box // 2 + 1
    ky = torch.fft.fftfreq(box, d=1.0 / box, device=device)[flat // width]
    kx = (flat % width).to(torch.float32)
    return Coefficients(box, radius, flat, ky.to(torch.float32), kx, flat_shell)


def shell_power(ft_half: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Sum of |F|^2 per shell over the independent half-plane coefficients.

    Parameters
    ----------
    ft_half : torch.Tensor
        complex, shape (n, box, box // 2 + 1).
    n_shells : int
        box // 2 + 1; coefficients in higher shells (corners) are ignored.

    Returns
    -------
    torch.Tensor
        float64, shape (n_shells,), summed over the n images.
    """
    box = ft_half.shape[-2]
    shell, independent = half_plane_shells(box, ft_half.device)
    power = (ft_half.real**2 + ft_half.imag**2).sum(0).to(torch.float64)
    sel = independent & (shell < n_shells)
    return torch.zeros(n_shells, dtype=torch.float64, device=ft_half.device).index_add_(0, shell[sel], power[sel])


def psi_angles(step: float) -> torch.Tensor:
    """In-plane angles 0, step, ... below 360 degrees (step adjusted to divide 360), float64."""
    n = max(1, int(round(360.0 / step)))
    return torch.arange(n, dtype=torch.float64) * (360.0 / n)


def translations(offset_range: float, step: float) -> torch.Tensor:
    """Grid offsets (x, y) in px with |t| <= offset_range, shape (t, 2), float64; (0, 0) first."""
    n = int(math.floor(offset_range / step + 1e-9))
    r = torch.arange(-n, n + 1, dtype=torch.float64) * step
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    grid = grid[(grid**2).sum(1) <= offset_range**2 + 1e-9]
    order = torch.argsort((grid**2).sum(1) * 1e6 + (grid[:, 1] + 1e3) * 1e3 + grid[:, 0], stable=True)
    return grid[order]


def oversampled(psi_step: float, offset_step: float, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-sample offsets of one coarse sample, as RELION's adaptive oversampling places them.

    Returns
    -------
    dpsi : torch.Tensor
        float64, shape (2**order,): degrees added to the coarse angle.
    dt : torch.Tensor
        float64, shape (4**order, 2): (x, y) px added to the coarse offset.
    """
    n = 2**order
    frac = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5
    dpsi = frac * psi_step
    d = frac * offset_step
    gy, gx = torch.meshgrid(d, d, indexing="ij")
    return dpsi, torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def phase_ramp(coef: Coefficients, shifts_px: torch.Tensor) -> torch.Tensor:
    """exp(+2 pi i k.t / box) for shifts t: multiplying an image's coefficients by it undoes a shift by t.

    Parameters
    ----------
    shifts_px : torch.Tensor
        Shape (..., 2), (x, y) px.

    Returns
    -------
    torch.Tensor
        complex64, shape (..., m).
    """
    t = shifts_px.to(device=coef.kx.device, dtype=torch.float32)
    phase = (2.0 * math.pi / coef.box) * (t[..., 0:1] * coef.kx + t[..., 1:2] * coef.ky)
    return torch.polar(torch.ones_like(phase), phase)


def soft_circle(box: int, radius_px: float, edge_px: float, device=None) -> torch.Tensor:
    """Circular mask centred on pixel box // 2: 1 inside ``radius_px``, cosine fall-off over ``edge_px``.

    Returns
    -------
    torch.Tensor
        float32, shape (box, box).
    """
    return soft_disc(box, 2, radius_px, edge_px, tensor=True, device=device)


def to_half_plane_ft(images: torch.Tensor) -> torch.Tensor:
    """rfft2 (norm="forward") with the phase origin at pixel box // 2; (n, box, box) -> (n, box, box // 2 + 1)."""
    return torch.fft.rfft2(torch.fft.ifftshift(images.to(torch.float32), dim=(-2, -1)), norm="forward")


def from_half_plane_ft(ft: torch.Tensor, box: int) -> torch.Tensor:
    """Inverse of :func:`to_half_plane_ft`: real images, float32, shape (n, box, box)."""
    return torch.fft.fftshift(torch.fft.irfft2(ft, s=(box, box), norm="forward"), dim=(-2, -1))


def scatter_half_plane(coef: Coefficients, values: torch.Tensor) -> torch.Tensor:
    """Place coefficient values (..., m) into a zero half plane (..., box, box // 2 + 1), filling the
    dependent half of the kx = 0 column by conjugate symmetry so that irfft2 sees a consistent plane."""
    box, width = coef.box, coef.box // 2 + 1
    out = torch.zeros(*values.shape[:-1], box * width, dtype=values.dtype, device=values.device)
    col0 = coef.kx == 0
    mirror_rows = (-coef.ky[col0]).round().to(torch.int64) % box
    mirror = mirror_rows * width
    out[..., mirror] = values[..., col0].conj() if values.is_complex() else values[..., col0]
    out[..., coef.index] = values
    return out.reshape(*values.shape[:-1], box, width)
