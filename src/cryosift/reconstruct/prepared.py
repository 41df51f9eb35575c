"""Particles prepared for pose search: Fourier coefficients on a disc, CTFs and spectra.

The disc holds the rfft half-plane coefficients within the final search radius, sorted by
radius, so the coefficients up to any lower resolution are a prefix of it. Particles are
read from their stacks once and kept in memory (on the GPU when there is one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from cryosift.io.images import read_particle_images
from cryosift.io.models import ParticleSet
from cryosift.logs import ProgressLog
from cryosift.reconstruct.particles import image_transforms, particle_ctfs

log = logging.getLogger(__name__)


@dataclass
class Disc:
    """Fourier coefficients of a half plane within a radius, sorted by radius.

    Attributes
    ----------
    freqs : torch.Tensor
        (kx, ky) in Fourier px, float32, shape (K, 2); kx >= 0.
    radius : torch.Tensor
        |k| in Fourier px, float32, shape (K,).
    mult : torch.Tensor
        0.5 on the kx = 0 column, 1 elsewhere, float32, shape (K,).
    shell : torch.Tensor
        round(|k|), int64, shape (K,).
    """

    freqs: torch.Tensor
    radius: torch.Tensor
    mult: torch.Tensor
    shell: torch.Tensor

    @classmethod
    def build(cls, max_radius: float, device=None) -> "Disc":
        """All half-plane coefficients with |k| <= max_radius (Fourier px)."""
        r = int(np.floor(max_radius))
        ky, kx = torch.meshgrid(torch.arange(-r, r + 1, device=device), torch.arange(0, r + 1, device=device), indexing="ij")
        ky, kx = ky.reshape(-1).float(), kx.reshape(-1).float()
        rad = torch.sqrt(kx**2 + ky**2)
        keep = rad <= max_radius
        order = torch.argsort(rad[keep], stable=True)
        kx, ky, rad = kx[keep][order], ky[keep][order], rad[keep][order]
        return cls(torch.stack([kx, ky], 1), rad, torch.where(kx == 0, 0.5, 1.0), torch.round(rad).long())

    def count(self, radius: float) -> int:
        """Number of leading coefficients with |k| <= radius."""
        return int(torch.searchsorted(self.radius, torch.tensor(radius + 1e-6, device=self.radius.device), right=True))

    def index(self, box: int, half: bool) -> torch.Tensor:
        """Flat positions of the coefficients in a (box, box // 2 + 1) rfft or (box, box) FFT plane."""
        iy = torch.remainder(self.freqs[:, 1].long(), box)
        ix = self.freqs[:, 0].long()
        return iy * (box // 2 + 1 if half else box) + ix


@dataclass
class PreparedParticles:
    """Particle transforms and CTFs on a disc, held in memory for repeated pose search.

    Attributes
    ----------
    values : torch.Tensor
        Transforms of the particle images (origin not undone), complex64, shape (n, K).
    ctf : torch.Tensor
        CTF at the same coefficients, float32, shape (n, K).
    box : int
        Particle box in px.
    pixel_size : float
        Å/px.
    noise : torch.Tensor
        Noise power per coefficient, E|N(k)|^2, per shell (index = round(|k|)), measured in
        the image corners outside the particle, float32, shape (n_shells,).
    power : torch.Tensor
        Mean |X(k)|^2 per shell over all particles (signal and noise), same shape.
    ctf_power : torch.Tensor
        Mean CTF^2 per shell, same shape.
    """

    values: torch.Tensor
    ctf: torch.Tensor
    box: int
    pixel_size: float
    noise: torch.Tensor
    power: torch.Tensor
    ctf_power: torch.Tensor


def _shell_sums(values: torch.Tensor, shell: torch.Tensor, n_shell: int) -> torch.Tensor:
    """Sum over particles and over the coefficients of each shell, float64, shape (n_shell,)."""
    return torch.zeros(n_shell, dtype=torch.float64, device=values.device).index_add_(0, shell, values.sum(0).double())


def prepare_particles(pset: ParticleSet, disc: Disc, pixel_size: float, device, particle_diameter: float,
                      chunk: int = 512, ctf: bool = True, progress: bool = False) -> PreparedParticles:
    """Read every particle once; keep its disc of Fourier coefficients, its CTF and the spectra.

    Parameters
    ----------
    pset : ParticleSet
        The particles.
    disc : Disc
        Coefficients to keep.
    pixel_size : float
        Å/px.
    device : torch.device
        Where the arrays live.
    particle_diameter : float
        Å; pixels farther than half of it from the centre measure the noise spectrum.
    chunk : int
        Particles read at a time.
    ctf : bool
        Model the CTF (False: ones).
    progress : bool
        Show a progress bar.
    """
    box = pset.box
    idx = disc.index(box, half=True)
    n, k = len(pset), len(disc.radius)
    n_shell = int(disc.shell.max()) + 1
    values = torch.empty((n, k), dtype=torch.complex64, device=device)
    ctfs = torch.empty((n, k), dtype=torch.float32, device=device)
    # Soft-edged complement of the particle disc: the background the noise is measured in.
    c = torch.arange(box, device=device, dtype=torch.float32) - box // 2
    r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    outside = ((r - 0.5 * particle_diameter / pixel_size) / 3.0).clamp(0.0, 1.0)
    sums = {name: torch.zeros(n_shell, dtype=torch.float64, device=device) for name in ("noise", "power", "ctf")}
    starts = range(0, n, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, total=(n + chunk - 1) // chunk, unit="chunk", desc="reading particles")
    done = ProgressLog(log, "particles read", n, every=30.0)
    for s in starts:
        rows = np.arange(s, min(n, s + chunk))
        images = torch.as_tensor(read_particle_images(pset, rows), device=device)
        values[s:s + len(rows)] = image_transforms(images, device).reshape(len(rows), -1)[:, idx]
        ctfs[s:s + len(rows)] = particle_ctfs(pset, rows, box, pixel_size, device, ctf).reshape(len(rows), -1)[:, idx]
        background = image_transforms(images * outside, device).reshape(len(rows), -1)[:, idx]
        sums["noise"] += _shell_sums(background.abs() ** 2, disc.shell, n_shell)
        sums["power"] += _shell_sums(values[s:s + len(rows)].abs() ** 2, disc.shell, n_shell)
        sums["ctf"] += _shell_sums(ctfs[s:s + len(rows)] ** 2, disc.shell, n_shell)
        done.step(n=len(rows))
    count = torch.zeros(n_shell, dtype=torch.float64, device=device).index_add_(
        0, disc.shell, torch.ones(k, dtype=torch.float64, device=device)) * n
    power = (sums["power"] / count.clamp_min(1)).float()
    area = float((outside**2).sum())
    if area > 0.05 * box * box:
        noise = (sums["noise"] / count.clamp_min(1) * (box * box / area)).float()
        noise = torch.minimum(noise, power)
    else:  # no background to measure: take all the power as noise (broad posteriors)
        noise = power.clone()
    return PreparedParticles(values, ctfs, box, pixel_size, noise.clamp_min(1e-12), power,
                             (sums["ctf"] / count.clamp_min(1)).float().clamp_min(1e-6))
