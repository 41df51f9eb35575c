"""Fourier-slice projection of 3D maps, in the RELION convention.

A particle with rotation matrix A (see :mod:`cryosift.io.rotations`) shows the projection
whose Fourier transform is the central slice F3D(A^T k), k = (kx, ky, 0). RELION's origin o
(rlnOriginX/YAngst / pixel size) is the shift that centres the particle, so the particle sits
at box centre - o: pass ``shifts_px = -o`` to :meth:`Projector.project` (checked against
relion_reconstruct in the simulator's tests). Maps are indexed [z, y, x]; images [y, x]; the
rotation centre is voxel box // 2 along each axis (RELION's centre).
"""

from __future__ import annotations

import math

import torch


def shift_images_ft(images_ft: torch.Tensor, shifts_px: torch.Tensor, box: int) -> torch.Tensor:
    """Translate images given as full-plane FFTs (FFT layout) by ``shifts_px`` (n, 2) = (x, y) px."""
    k = torch.fft.fftfreq(box, device=images_ft.device, dtype=torch.float32)
    sx = shifts_px[:, 0].to(torch.float32)[:, None, None]
    sy = shifts_px[:, 1].to(torch.float32)[:, None, None]
    phase = -2.0 * math.pi * (k[None, None, :] * sx + k[None, :, None] * sy)
    return images_ft * torch.polar(torch.ones_like(phase), phase)


class Projector:
    """A map prepared for fast Fourier-slice projection (2x zero padding, trilinear, gridding-corrected).

    Parameters
    ----------
    volume : torch.Tensor
        Map, shape (box, box, box), indexed [z, y, x].
    pad : int
        Oversampling of the 3D transform (2 keeps interpolation errors small).
    """

    def __init__(self, volume: torch.Tensor, pad: int = 2):
        vol = torch.as_tensor(volume, dtype=torch.float32)
        self.box = int(vol.shape[-1])
        self.pad = pad
        self.device = vol.device
        n = self.box
        big = n * pad
        # Pre-divide by the real-space footprint of trilinear interpolation (sinc^2).
        r = (torch.arange(n, device=vol.device, dtype=torch.float32) - n // 2) / big
        s = torch.sinc(r) ** 2
        vol = vol / (s[:, None, None] * s[None, :, None] * s[None, None, :])
        padded = torch.zeros((big, big, big), dtype=torch.float32, device=vol.device)
        o = big // 2 - n // 2
        padded[o:o + n, o:o + n, o:o + n] = vol
        ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(padded)))
        self._ft = torch.stack([ft.real, ft.imag])[None]  # (1, 2, big, big, big)
        self._big = big

    def slices(self, rotations: torch.Tensor) -> torch.Tensor:
        """Central slices as full-plane FFTs (FFT layout), complex64, shape (n, box, box)."""
        n = self.box
        rot = torch.as_tensor(rotations, dtype=torch.float32, device=self.device).reshape(-1, 3, 3)
        k = torch.fft.fftfreq(n, d=1.0 / n, device=self.device, dtype=torch.float32)  # integer freqs
        ky, kx = torch.meshgrid(k, k, indexing="ij")
        # k3 = kx * A[0, :] + ky * A[1, :], in padded-grid voxel units.
        k3 = (kx[None, :, :, None] * rot[:, None, None, 0, :] + ky[None, :, :, None] * rot[:, None, None, 1, :]) * self.pad
        centre = self._big // 2
        grid = (k3 + centre) / (self._big - 1) * 2.0 - 1.0  # (x, y, z) order matches grid_sample
        sampled = torch.nn.functional.grid_sample(
            self._ft.expand(1, -1, -1, -1, -1), grid[None], mode="bilinear", padding_mode="zeros", align_corners=True,
        )[0]  # (2, n, box, box)
        return torch.complex(sampled[0], sampled[1])

    def project(self, rotations: torch.Tensor, shifts_px: torch.Tensor | None = None) -> torch.Tensor:
        """Projections, float32, shape (n, box, box), translated by ``shifts_px`` (n, 2) = (x, y) px.

        For a particle with RELION origin o (px), the translation is -o.
        """
        ft = self.slices(rotations)
        if shifts_px is not None:
            ft = shift_images_ft(ft, torch.as_tensor(shifts_px, device=self.device), self.box)
        # Slice origin sits at array index 0 (FFT layout) but the real-space centre is box // 2.
        return torch.fft.fftshift(torch.fft.ifft2(ft).real, dim=(-2, -1))
