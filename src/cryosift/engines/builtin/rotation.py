"""In-plane rotation of images in Fourier space, RELION's convention.

A particle with in-plane angle psi shows its class average A rotated so that its Fourier
transform is P(k) = A(R^T k), R = [[cos psi, sin psi], [-sin psi, cos psi]] (the top-left of
RELION's Euler matrix with rot = tilt = 0, as :mod:`cryosift.projection` uses). Values at
rotated frequencies are interpolated bilinearly in a 2x zero-padded transform after
dividing the image by the interpolation's real-space footprint (gridding correction).
"""

from __future__ import annotations

import torch

from cryosift.engines.builtin.grids import Coefficients, from_half_plane_ft, scatter_half_plane


def _rotated_points(coef: Coefficients, angles_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source frequencies R(angle)^T k for every angle and coefficient: (ky, kx), each (..., m)."""
    a = torch.deg2rad(angles_deg.to(device=coef.kx.device, dtype=torch.float64)).to(torch.float32)[..., None]
    c, s = torch.cos(a), torch.sin(a)
    kx, ky = coef.kx, coef.ky
    return s * kx + c * ky, c * kx - s * ky


def padded_spectrum(images: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Centred 2D transforms of zero-padded, gridding-corrected images.

    Parameters
    ----------
    images : torch.Tensor
        float32, shape (n, box, box), rotation centre at pixel box // 2.

    Returns
    -------
    torch.Tensor
        float32, shape (n, 2, big, big), big = pad x box: real and imaginary parts with zero
        frequency at index big // 2, scaled like rfft2(norm="forward") of the unpadded image.
    """
    n, box = images.shape[0], images.shape[-1]
    big = pad * box
    r = (torch.arange(box, device=images.device, dtype=torch.float32) - box // 2) / big
    footprint = torch.sinc(r) ** 2
    corrected = images.to(torch.float32) / (footprint[:, None] * footprint[None, :])
    padded = torch.zeros((n, big, big), device=images.device, dtype=torch.float32)
    o = big // 2 - box // 2
    padded[:, o:o + box, o:o + box] = corrected
    ft = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(padded, dim=(-2, -1))), dim=(-2, -1)) / (box * box)
    return torch.stack([ft.real, ft.imag], 1)


def sample_rotated(spectrum: torch.Tensor, coef: Coefficients, angles_deg: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Fourier coefficients of images rotated in plane: out[i, j] = F_i(R(angle_ij)^T k).

    Parameters
    ----------
    spectrum : torch.Tensor
        From :func:`padded_spectrum`, shape (n, 2, big, big).
    angles_deg : torch.Tensor
        Degrees, shape (p,) (the same angles for every image) or (n, p).

    Returns
    -------
    torch.Tensor
        complex64, shape (n, p, m).
    """
    n, big = spectrum.shape[0], spectrum.shape[-1]
    angles = angles_deg if angles_deg.ndim == 2 else angles_deg[None].expand(n, -1)
    sy, sx = _rotated_points(coef, angles)  # (n, p, m)
    scale = 2.0 / (big - 1)
    gx = (sx * pad + big // 2) * scale - 1.0
    gy = (sy * pad + big // 2) * scale - 1.0
    grid = torch.stack([gx, gy], -1)  # (n, p, m, 2)
    out = torch.nn.functional.grid_sample(spectrum, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return torch.complex(out[:, 0], out[:, 1])


def rotate_coefficients(values: torch.Tensor, coef: Coefficients, angles_deg: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Rotate images given by their coefficients, one angle per image: out_i(k) = V_i(R(angle_i)^T k).

    Parameters
    ----------
    values : torch.Tensor
        complex64, shape (n, m): Fourier coefficients (band-limited to ``coef``).
    angles_deg : torch.Tensor
        Shape (n,).

    Returns
    -------
    torch.Tensor
        complex64, shape (n, m).
    """
    images = from_half_plane_ft(scatter_half_plane(coef, values), coef.box)
    return sample_rotated(padded_spectrum(images, pad), coef, angles_deg.reshape(-1, 1), pad)[:, 0]


def rotate_weights(weights: torch.Tensor, coef: Coefficients, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate real Fourier-space weights (sums of CTF^2), one angle per row, bilinear on the unpadded grid.

    Bilinear interpolation is a convex combination of neighbours, so weights stay positive
    and exact at grid points (padded sinc-like interpolation would ring on their sharp edges).

    Parameters
    ----------
    weights : torch.Tensor
        float32, shape (n, m), symmetric under k -> -k.
    angles_deg : torch.Tensor
        Shape (n,).

    Returns
    -------
    torch.Tensor
        float32, shape (n, m).
    """
    box = coef.box
    width = box // 2 + 1
    half = scatter_half_plane(coef, weights)  # (n, box, width)
    full = torch.zeros((weights.shape[0], box, box), dtype=weights.dtype, device=weights.device)
    full[..., :width] = half
    cols = torch.arange(1, box - width + 1, device=weights.device)  # kx = -1 .. -(box - width)
    mirrored = half.index_select(-2, (-torch.arange(box, device=weights.device)) % box)  # row ky -> -ky
    full[..., box - cols] = mirrored[..., cols]  # W(ky, -kx) = W(-ky, kx)
    full = torch.fft.fftshift(full, dim=(-2, -1))[:, None]
    sy, sx = _rotated_points(coef, angles_deg.reshape(-1, 1))
    scale = 2.0 / (box - 1)
    grid = torch.stack([(sx + box // 2) * scale - 1.0, (sy + box // 2) * scale - 1.0], -1)
    return torch.nn.functional.grid_sample(full, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0, 0]


def wrap_degrees(angle) -> torch.Tensor:
    """Angles wrapped into (-180, 180] degrees."""
    a = torch.as_tensor(angle, dtype=torch.float64)
    return 180.0 - torch.remainder(180.0 - a, 360.0)

