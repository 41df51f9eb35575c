"""Fourier-space helpers shared by simulation, classification, reconstruction and validation."""

from __future__ import annotations

import numpy as np
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


def shell_index(box: int, ndim: int = 3, half: bool = True, centred: bool = False, pad: int = 1,
                tensor: bool = False, device=None):
    """Fourier shell of every coefficient: round(|k| / pad), |k| in Fourier px of a ``box`` transform.

    The one definition of a shell for classification, reconstruction and FSC. Frequencies are
    whole numbers, so |k|^2 is exact and the rounding (half to even) never depends on the dtype.

    Parameters
    ----------
    box : int
        Side of the transform (a padded one: ``pad`` x the map's box).
    ndim : int
        2 (images) or 3 (maps).
    half : bool
        The last axis holds frequencies 0 .. box // 2 only (``rfftn``).
    centred : bool
        Zero frequency at index box // 2 on the full axes (as after ``fftshift``), else FFT order.
    pad : int
        Padding factor: shells counted in Fourier px of the unpadded box.
    tensor, device
        Return a torch tensor on ``device`` instead of a numpy array.

    Returns
    -------
    np.ndarray or torch.Tensor
        int64, shape (box,) * (ndim - 1) + (box // 2 + 1,) when ``half``, else (box,) * ndim.
    """
    full = np.arange(box) - box // 2
    if not centred:
        full = np.fft.ifftshift(full)
    axes = [full.astype(np.float64)] * ndim
    if half:
        axes[-1] = np.arange(box // 2 + 1, dtype=np.float64)
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    shells = np.rint(np.sqrt(sum(g**2 for g in grids)) / pad).astype(np.int64)
    return torch.from_numpy(shells).to(device) if tensor else shells


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
