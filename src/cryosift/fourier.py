"""Fourier-space helpers shared by simulation, classification and reconstruction."""

from __future__ import annotations

import torch


def frequency_grid(box: int, pixel_size: float = 1.0, half: bool = False, device=None,
                   dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial frequencies (ky, kx) in 1/Å of a box x box image, FFT layout.

    Returns
    -------
    ky, kx : torch.Tensor
        Shape (box, box) or (box, box // 2 + 1) when ``half``; ky varies along rows.
    """
    fy = torch.fft.fftfreq(box, d=pixel_size, device=device, dtype=dtype)
    fx = torch.fft.rfftfreq(box, d=pixel_size, device=device, dtype=dtype) if half else fy
    return torch.meshgrid(fy, fx, indexing="ij")


def radial_index(box: int, half: bool = True, device=None) -> torch.Tensor:
    """Integer shell index round(|k| in px^-1 units x box) per Fourier pixel, FFT layout."""
    ky, kx = frequency_grid(box, 1.0, half=half, device=device, dtype=torch.float64)
    return torch.round(torch.sqrt(kx**2 + ky**2) * box).to(torch.int64)


def fourier_crop(images: torch.Tensor, new_box: int) -> torch.Tensor:
    """Downsample real images by cropping their Fourier transform (no aliasing).

    Parameters
    ----------
    images : torch.Tensor
        Shape (..., box, box), real.
    new_box : int
        Output side in px (<= box; even sizes keep the transform symmetric).

    Returns
    -------
    torch.Tensor
        Shape (..., new_box, new_box), same mean intensity per pixel.
    """
    box = images.shape[-1]
    if new_box == box:
        return images
    if new_box > box:
        raise ValueError(f"fourier_crop cannot enlarge {box} px to {new_box} px")
    f = torch.fft.fftshift(torch.fft.fft2(images.to(torch.float32)), dim=(-2, -1))
    start = box // 2 - new_box // 2
    f = f[..., start:start + new_box, start:start + new_box]
    out = torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1))).real
    return out * (new_box * new_box) / (box * box)
