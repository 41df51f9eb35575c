"""Batched particle images from a map: central slices, shifts and CTF on the rfft half plane.

Images are handled as "packed" Fourier coefficients: the rfft half-plane values inside
the Nyquist circle (|k| <= box / 2), in a fixed order. Working on those alone halves
the work of full-plane slices, and sampling the map's transform for several batches
at once lets the CPU use every core. The result equals
:meth:`cryosift.projection.Projector.project` low-passed at Nyquist. Shifts here are
displacements of the image (+shift moves the particle by +shift); RELION's origin is
minus the displacement.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryosift.ctf import ctf_2d
from cryosift.projection import Projector


class ParticleRenderer:
    """A map ready for fast projection into particle images.

    Parameters
    ----------
    volume : np.ndarray or torch.Tensor
        Map, shape (box, box, box), indexed [z, y, x]; its rotation centre is voxel box // 2.
    pixel_size : float
        Å/px of map and images.
    device : torch.device or str, optional
        Default: the volume's device (CPU for numpy input).
    pad : int
        Oversampling of the map's transform (see :class:`~cryosift.projection.Projector`).
    """

    def __init__(self, volume, pixel_size: float, device=None, pad: int = 2):
        vol = torch.as_tensor(np.asarray(volume) if not torch.is_tensor(volume) else volume, dtype=torch.float32)
        if device is not None:
            vol = vol.to(device)
        self.device = vol.device
        self.box = int(vol.shape[-1])
        self.pixel_size = float(pixel_size)
        self.projector = Projector(vol, pad=pad)
        n = self.box
        ky = torch.fft.fftfreq(n, d=1.0 / n, device=self.device)
        kx = torch.fft.rfftfreq(n, d=1.0 / n, device=self.device)
        kyy, kxx = torch.meshgrid(ky, kx, indexing="ij")
        inside = (kxx**2 + kyy**2) <= (n // 2) ** 2
        self.flat_index = torch.nonzero(inside.reshape(-1)).reshape(-1)
        self.kx, self.ky = kxx.reshape(-1)[self.flat_index], kyy.reshape(-1)[self.flat_index]
        self._kxy = torch.stack([self.kx, self.ky], dim=1)  # (M, 2)
        self.n_coefficients = int(self.flat_index.numel())

    # ------------------------------------------------------------------ Fourier side

    def slices(self, rotations) -> torch.Tensor:
        """Packed central slices for rotation matrices (n, 3, 3) (RELION convention), complex64 (n, M)."""
        rot = torch.as_tensor(np.asarray(rotations), dtype=torch.float32, device=self.device).reshape(-1, 3, 3)
        n = rot.shape[0]
        if n == 0:
            return torch.zeros((0, self.n_coefficients), dtype=torch.complex64, device=self.device)
        ft = getattr(self.projector, "_ft", None)
        if ft is None:  # a projector without its transform exposed: take its full-plane slices
            full = self.projector.slices(rot).reshape(n, -1)
            return full[:, self._full_index()]
        big, pad = self.projector._big, self.projector.pad
        # Sample at k3 = (kx A[0] + ky A[1]) * pad voxels from the centre, in grid_sample's [-1, 1] units.
        grid = torch.matmul(self._kxy, rot[:, :2, :] * (2.0 * pad / (big - 1)))
        grid += (big // 2) * 2.0 / (big - 1) - 1.0
        # grid_sample parallelises over its batch: split the particles into batches on the CPU.
        nb = 1 if self.device.type == "cuda" else min(n, max(2, 4 * torch.get_num_threads()))
        per = math.ceil(n / nb)
        if per * nb != n:
            grid = torch.cat([grid, grid[:1].expand(per * nb - n, -1, -1)])
        out = torch.nn.functional.grid_sample(
            ft.expand(nb, -1, -1, -1, -1), grid.reshape(nb, 1, per, -1, 3),
            mode="bilinear", padding_mode="zeros", align_corners=True)  # (nb, 2, 1, per, M)
        out = out[:, :, 0].permute(0, 2, 1, 3).reshape(nb * per, 2, -1)[:n]
        return torch.complex(out[:, 0].contiguous(), out[:, 1].contiguous())

    def _full_index(self) -> torch.Tensor:
        n = self.box
        iy, ix = self.flat_index // (n // 2 + 1), self.flat_index % (n // 2 + 1)
        return iy * n + ix

    def shift(self, packed: torch.Tensor, shifts_px) -> torch.Tensor:
        """Translate images by ``shifts_px`` (n, 2) = (x, y) px (image moves by +shift)."""
        s = torch.as_tensor(np.asarray(shifts_px), dtype=torch.float32, device=self.device).reshape(-1, 2)
        phase = (-2.0 * math.pi / self.box) * (s[:, :1] * self.kx[None] + s[:, 1:] * self.ky[None])
        return packed * torch.polar(torch.ones_like(phase), phase)

    def ctf(self, params: np.ndarray, voltage: float, spherical_aberration: float,
            amplitude_contrast: float) -> torch.Tensor:
        """Packed CTF per particle, float32 (n, M); see :func:`unique_ctf` for ``params``."""
        unique, inverse = unique_ctf(self.box, self.pixel_size, params, voltage, spherical_aberration,
                                     amplitude_contrast, device=self.device)
        return unique.reshape(len(unique), -1)[:, self.flat_index][inverse]

    # ------------------------------------------------------------------ real space

    def to_images(self, packed: torch.Tensor) -> torch.Tensor:
        """Real images, float32 (n, box, box), centre at pixel box // 2."""
        n = packed.shape[0]
        full = torch.zeros((n, self.box * (self.box // 2 + 1)), dtype=torch.complex64, device=self.device)
        full[:, self.flat_index] = packed
        img = torch.fft.irfft2(full.reshape(n, self.box, self.box // 2 + 1), s=(self.box, self.box))
        return torch.fft.fftshift(img, dim=(-2, -1))

    def to_packed(self, images) -> torch.Tensor:
        """Packed Fourier coefficients of real images (n, box, box) centred at pixel box // 2."""
        img = torch.as_tensor(images, dtype=torch.float32, device=self.device)
        ft = torch.fft.rfft2(torch.fft.ifftshift(img, dim=(-2, -1)))
        return ft.reshape(img.shape[0], -1)[:, self.flat_index]

    def project(self, rotations, shifts_px=None) -> torch.Tensor:
        """CTF-free projections, float32 (n, box, box), shifted by ``shifts_px`` (n, 2) px when given."""
        packed = self.slices(rotations)
        if shifts_px is not None:
            packed = self.shift(packed, shifts_px)
        return self.to_images(packed)


def circular_mask(box: int, diameter_px: float, device=None) -> torch.Tensor:
    """Boolean disc of the given diameter (px) centred on pixel box // 2, shape (box, box)."""
    r = torch.arange(box, device=device, dtype=torch.float32) - box // 2
    return (r[:, None] ** 2 + r[None, :] ** 2) <= (diameter_px / 2.0) ** 2


def masked_variance(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance of each image's pixels inside ``mask`` (about the masked mean), shape (n,)."""
    vals = images[:, mask]
    return vals.var(dim=1, unbiased=False)


def place(images: torch.Tensor, offsets_px) -> torch.Tensor:
    """Move images by whole pixels (n, 2) = (x, y), filling with zeros (no wrap-around)."""
    n, box = images.shape[0], images.shape[-1]
    out = torch.zeros_like(images)
    for i, (dx, dy) in enumerate(np.asarray(offsets_px, dtype=np.int64).reshape(n, 2)):
        if abs(dx) >= box or abs(dy) >= box:
            continue
        ys, yd = (slice(0, box - dy), slice(dy, box)) if dy >= 0 else (slice(-dy, box), slice(0, box + dy))
        xs, xd = (slice(0, box - dx), slice(dx, box)) if dx >= 0 else (slice(-dx, box), slice(0, box + dx))
        out[i, yd, xd] = images[i, ys, xs]
    return out


def unique_ctf(box: int, pixel_size: float, params: np.ndarray, voltage: float, spherical_aberration: float,
               amplitude_contrast: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CTFs (RELION convention, rfft half plane) computed once per distinct parameter set.

    Parameters
    ----------
    params : np.ndarray
        Per particle: defocus U, defocus V (Å), defocus angle, phase shift (degrees),
        B-factor (Å²); shape (n, 5).
    voltage, spherical_aberration, amplitude_contrast : float
        kV, mm, fraction.

    Returns
    -------
    ctfs : torch.Tensor
        float32 (u, box, box // 2 + 1), one per distinct row of ``params``.
    inverse : torch.Tensor
        int64 (n,): particle -> row of ``ctfs``.
    """
    unique, inverse = np.unique(np.asarray(params, dtype=np.float64).reshape(-1, 5), axis=0, return_inverse=True)
    c = ctf_2d(box, pixel_size, unique[:, 0], unique[:, 1], unique[:, 2], voltage, spherical_aberration,
               amplitude_contrast, phase_shift=unique[:, 3], bfactor=unique[:, 4], half=True, device=device)
    return c, torch.as_tensor(inverse.reshape(-1), device=device)
