"""Pose search: score particles against projections of a map over orientations and shifts.

Particles and projections are compared on a disc of Fourier coefficients (rfft half plane,
sorted by radius so that a lower resolution is a prefix). The log-likelihood of pose
(A, t) under white-per-shell Gaussian noise of variance v(|k|) is, up to a constant,

    L = sum_k w_k [2 Re(conj(Z_t) CTF P_A) - CTF^2 |P_A|^2] / v,

with Z_t the particle transform moved back by t and w_k = 1/2 on the kx = 0 column
(its Friedel mates are in the half plane too). Scores are divided by a temperature
(>= 1) that keeps early posteriors broad.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryosift.io.images import read_particle_images
from cryosift.io.models import ParticleSet
from cryosift.projection import Projector
from cryosift.reconstruct.particles import image_transforms, particle_ctfs, undo_origin
from cryosift.reconstruct.sampling import local_offsets


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
    for s in starts:
        rows = np.arange(s, min(n, s + chunk))
        images = torch.as_tensor(read_particle_images(pset, rows), device=device)
        values[s:s + len(rows)] = image_transforms(images, device).reshape(len(rows), -1)[:, idx]
        ctfs[s:s + len(rows)] = particle_ctfs(pset, rows, box, pixel_size, device, ctf).reshape(len(rows), -1)[:, idx]
        background = image_transforms(images * outside, device).reshape(len(rows), -1)[:, idx]
        sums["noise"] += _shell_sums(background.abs() ** 2, disc.shell, n_shell)
        sums["power"] += _shell_sums(values[s:s + len(rows)].abs() ** 2, disc.shell, n_shell)
        sums["ctf"] += _shell_sums(ctfs[s:s + len(rows)] ** 2, disc.shell, n_shell)
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


class DiscProjector(Projector):
    """A :class:`~cryosift.projection.Projector` that samples sections at given coefficients only.

    Pose search needs each section on a disc of a few hundred coefficients, not the full
    plane; sampling only those makes local searches several times faster.
    """

    def sections(self, rotations: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """Central-section values at ``freqs`` ((kx, ky) Fourier px, shape (K, 2)).

        Returns
        -------
        torch.Tensor
            float32, shape (q, 2K): real parts of the K values, then imaginary parts.
        """
        rot = torch.as_tensor(rotations, dtype=torch.float32, device=self.device).reshape(-1, 3, 3)
        f = freqs.to(self.device, torch.float32)
        # Same sampling as Projector.slices: k3 = pad * A^T (kx, ky, 0), trilinear in the padded
        # transform, folded into one affine map to grid_sample's [-1, 1] coordinates.
        a = 2.0 * self.pad / (self._big - 1)
        b = 2.0 * (self._big // 2) / (self._big - 1) - 1.0
        grid = torch.matmul(f, rot[:, :2, :] * a) + b  # (q, K, 3) as (x, y, z)
        out = torch.nn.functional.grid_sample(self._ft, grid[None, :, :, None, :], mode="bilinear",
                                              padding_mode="zeros", align_corners=True)[0, :, :, :, 0]
        return out.permute(1, 0, 2).reshape(rot.shape[0], -1)


def project_disc(projector: DiscProjector, rotations: torch.Tensor, freqs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Central sections of a map on the disc.

    Parameters
    ----------
    projector : DiscProjector
        The map.
    rotations : torch.Tensor
        Shape (q, 3, 3).
    freqs : torch.Tensor
        (kx, ky) in Fourier px of the particle box, shape (K, 2).

    Returns
    -------
    torch.Tensor
        float32, shape (q, 2K): real parts, then imaginary parts.
    """
    rot = rotations.reshape(-1, 3, 3)
    out = [projector.sections(rot[s:s + chunk], freqs) for s in range(0, len(rot), chunk)]
    return torch.cat(out) if out else torch.empty((0, 2 * len(freqs)), device=rot.device)


def as_complex(ri: torch.Tensor) -> torch.Tensor:
    """(..., 2K) real-then-imaginary layout to complex64 (..., K)."""
    k = ri.shape[-1] // 2
    return torch.complex(ri[..., :k], ri[..., k:])


def global_search(values: torch.Tensor, ctf: torch.Tensor, weight: torch.Tensor, proj: torch.Tensor,
                  freqs: torch.Tensor, shifts_px: torch.Tensor, box: int, temperature: float, top: int,
                  chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score every particle against every (orientation, shift) of a global grid.

    Parameters
    ----------
    values, ctf : torch.Tensor
        Particle transforms (complex64) and CTFs (float32) on the disc, shape (m, K).
    weight : torch.Tensor
        w_k / v(|k|) per coefficient, float32, shape (K,).
    proj : torch.Tensor
        Sections of the grid orientations from :func:`project_disc`, float32, shape (R, 2K).
    freqs : torch.Tensor
        (kx, ky) Fourier px, shape (K, 2).
    shifts_px : torch.Tensor
        Candidate origins (x, y) in px, shape (S, 2).
    box : int
        Particle box in px.
    temperature : float
        Scores are divided by it.
    top : int
        Best poses kept per particle.

    Returns
    -------
    orientation : torch.Tensor
        Index into the grid of each kept pose, int64, shape (m, top).
    shift : torch.Tensor
        Index into ``shifts_px``, int64, shape (m, top).
    score : torch.Tensor
        Tempered log-likelihood of each kept pose, float32, shape (m, top).
    """
    m, s, r = values.shape[0], shifts_px.shape[0], proj.shape[0]
    k = proj.shape[1] // 2
    pr = proj.T.contiguous()  # (2K, R)
    p2 = (proj[:, :k] ** 2 + proj[:, k:] ** 2).T.contiguous()  # (K, R)
    out_o, out_s, out_v = [], [], []
    for a in range(0, m, chunk):
        x, c = values[a:a + chunk], ctf[a:a + chunk]
        mc = x.shape[0]
        z = undo_origin(x.repeat_interleave(s, 0), freqs, shifts_px.repeat(mc, 1), box)  # (mc*S, K)
        wc = (weight * c).repeat_interleave(s, 0)
        cross = torch.cat([z.real * wc, z.imag * wc], dim=1) @ pr  # (mc*S, R)
        quad = (weight * c * c) @ p2  # (mc, R)
        score = (2.0 * cross.view(mc, s, r) - quad[:, None, :]) / temperature
        v, i = torch.topk(score.reshape(mc, -1), min(top, s * r), dim=1)
        out_o.append(i % r)
        out_s.append(i // r)
        out_v.append(v)
    return torch.cat(out_o), torch.cat(out_s), torch.cat(out_v)


def marginal_search(values: torch.Tensor, ctf: torch.Tensor, weight: torch.Tensor, mult: torch.Tensor,
                    proj: torch.Tensor, freqs: torch.Tensor, shifts_px: torch.Tensor, box: int, temperature: float,
                    chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expectation step over a whole global grid: posterior-weighted sums per grid orientation.

    Every particle is spread over all (orientation, shift) pairs by its tempered
    posterior, as in RELION's and cryoSPARC's marginalisation over poses; the sums per
    orientation are then inserted once per orientation (not once per particle).

    Parameters are those of :func:`global_search`, plus ``mult`` (0.5 on the kx = 0
    column, shape (K,)).

    Returns
    -------
    data : torch.Tensor
        sum over particles and shifts of p CTF Z_t mult, complex64, shape (R, K).
    weight_sum : torch.Tensor
        sum of p CTF^2 mult, float32, shape (R, K).
    orientation, shift : torch.Tensor
        Best grid orientation and shift index per particle, int64, shape (m,).
    max_probability : torch.Tensor
        Posterior of the best pose, float32, shape (m,).
    """
    m, s, r = values.shape[0], shifts_px.shape[0], proj.shape[0]
    k = proj.shape[1] // 2
    pr = proj.T.contiguous()
    p2 = (proj[:, :k] ** 2 + proj[:, k:] ** 2).T.contiguous()
    data = torch.zeros((r, 2 * k), device=values.device)
    wsum = torch.zeros((r, k), device=values.device)
    best_o, best_s, best_p = [], [], []
    for a in range(0, m, chunk):
        x, c = values[a:a + chunk], ctf[a:a + chunk]
        mc = x.shape[0]
        z = undo_origin(x.repeat_interleave(s, 0), freqs, shifts_px.repeat(mc, 1), box)  # (mc*S, K)
        zri = torch.cat([z.real, z.imag], dim=1)
        wc = torch.cat([weight * c, weight * c], dim=1).repeat_interleave(s, 0)
        score = (2.0 * (zri * wc) @ pr).view(mc, s, r) - ((weight * c * c) @ p2)[:, None, :]
        post = torch.softmax((score / temperature).reshape(mc, -1), dim=1)
        p, i = post.max(dim=1)
        best_o.append(i % r)
        best_s.append(i // r)
        best_p.append(p)
        cm = torch.cat([c * mult, c * mult], dim=1).repeat_interleave(s, 0)
        data += post.view(mc * s, r).T @ (zri * cm)
        wsum += post.view(mc, s, r).sum(1).T @ (c * c * mult)
    return torch.complex(data[:, :k], data[:, k:]), wsum, torch.cat(best_o), torch.cat(best_s), torch.cat(best_p)


def local_search(projector: DiscProjector, values: torch.Tensor, ctf: torch.Tensor,
                 weight: torch.Tensor, freqs: torch.Tensor, box: int, rotations: torch.Tensor,
                 shifts_px: torch.Tensor, rot_step_deg: float, shift_step_px: float, temperature: float,
                 keep: int, chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refine candidate poses on a finer local grid around each.

    Each candidate orientation A is tried as D A for the 27 small rotations D of
    :func:`local_offsets` (``rot_step_deg`` apart) and each origin on a 3 x 3 grid
    ``shift_step_px`` apart around the candidate's.

    Parameters
    ----------
    projector : DiscProjector
        The map.
    values, ctf : torch.Tensor
        Particles on the disc, shape (m, K).
    weight : torch.Tensor
        w_k / v(|k|), shape (K,).
    freqs : torch.Tensor
        Shape (K, 2).
    box : int
        Particle box in px.
    rotations : torch.Tensor
        Candidate orientations, shape (m, M, 3, 3).
    shifts_px : torch.Tensor
        Candidate origins (x, y) px, shape (m, M, 2).
    rot_step_deg, shift_step_px : float
        Local grid spacings.
    temperature : float
        Scores are divided by it.
    keep : int
        Best poses kept per particle.

    Returns
    -------
    rotations : torch.Tensor
        Shape (m, keep, 3, 3).
    shifts_px : torch.Tensor
        Shape (m, keep, 2).
    score : torch.Tensor
        Tempered log-likelihoods, shape (m, keep), best first.
    """
    dev = values.device
    offsets = torch.as_tensor(local_offsets(rot_step_deg), dtype=torch.float32, device=dev)  # (J, 3, 3)
    g = torch.tensor([0.0, -1.0, 1.0], device=dev) * shift_step_px
    dshift = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)  # (9, 2)
    j, ns = offsets.shape[0], dshift.shape[0]
    out_r, out_t, out_v = [], [], []
    for a in range(0, values.shape[0], chunk):
        rot = rotations[a:a + chunk].to(torch.float32)
        mc, mm = rot.shape[:2]
        cand = torch.einsum("jab,mcbd->mcjad", offsets, rot)  # (mc, M, J, 3, 3)
        proj = project_disc(projector, cand.reshape(-1, 3, 3), freqs).view(mc * mm, j, -1)
        sh = shifts_px[a:a + chunk, :, None, :] + dshift[None, None]  # (mc, M, 9, 2)
        x = values[a:a + chunk]
        z = undo_origin(x.repeat_interleave(mm * ns, 0), freqs, sh.reshape(-1, 2), box).view(mc, mm, ns, -1)
        wc = weight * ctf[a:a + chunk]
        zw = torch.cat([z.real, z.imag], dim=-1) * torch.cat([wc, wc], dim=-1)[:, None, None]  # (mc, M, 9, 2K)
        cross = torch.bmm(proj, zw.reshape(mc * mm, ns, -1).transpose(1, 2)).view(mc, mm, j, ns)
        k = proj.shape[-1] // 2
        p2 = (proj[..., :k] ** 2 + proj[..., k:] ** 2).reshape(mc, mm * j, k)
        quad = torch.bmm(p2, (wc * ctf[a:a + chunk])[:, :, None]).view(mc, mm, j)
        score = ((2.0 * cross - quad[..., None]) / temperature).reshape(mc, -1)
        v, i = torch.topk(score, min(keep, score.shape[1]), dim=1)
        ci, ji, si = i // (j * ns), (i // ns) % j, i % ns
        b = torch.arange(mc, device=dev)[:, None]
        out_r.append(cand[b, ci, ji])
        out_t.append(sh[b, ci, si])
        out_v.append(v)
    return torch.cat(out_r), torch.cat(out_t), torch.cat(out_v)


def residual_power(values: torch.Tensor, ctf: torch.Tensor, proj: torch.Tensor, freqs: torch.Tensor,
                   shifts_px: torch.Tensor, box: int) -> torch.Tensor:
    """|Z_t - CTF P|^2 per coefficient for each particle at one pose, float32, shape (m, K).

    ``proj`` holds the sections from :func:`project_disc`, shape (m, 2K).
    """
    z = undo_origin(values, freqs, shifts_px, box)
    return (z - ctf * as_complex(proj)).abs() ** 2
