"""The noise model: one power spectrum sigma^2(shell) per Fourier component (real and imaginary part).

The likelihood of a particle image X given class average A, CTF C and pose is
exp(-sum_k |X(k) - C(k) A'(k)|^2 / (2 sigma^2(|k|))) over the independent coefficients,
with transforms scaled as rfft2(norm="forward"), RELION's scaling. As in RELION, sigma^2 is
the noise of the whole (unmasked) image while the likelihood is evaluated on masked images:
the residuals of masked images are divided by the mask's mean square, which tempers the
likelihood by that factor and keeps early posteriors as broad as RELION's.
"""

from __future__ import annotations

import numpy as np
import torch

from cryosift.engines.builtin.grids import Coefficients, half_plane_shells, shell_power, to_half_plane_ft


def fill_small(values: torch.Tensor, floor: float = 1e-14) -> torch.Tensor:
    """Replace entries <= floor by the nearest valid neighbour (lower shells first), as RELION does."""
    v = values.clone()
    good = v > floor
    if not bool(good.any()):
        return torch.full_like(v, 1.0)
    idx = torch.nonzero(good).reshape(-1)
    for i in torch.nonzero(~good).reshape(-1).tolist():
        below = idx[idx < i]
        v[i] = v[int(below[-1])] if len(below) else v[int(idx[0])]
    return v


def shell_pixel_counts(box: int, device=None) -> torch.Tensor:
    """Independent half-plane coefficients per shell 0 .. box // 2, float64."""
    shell, independent = half_plane_shells(box, device)
    n_shells = box // 2 + 1
    sel = independent & (shell < n_shells)
    return torch.bincount(shell[sel], minlength=n_shells)[:n_shells].to(torch.float64)


def initial_noise(data, rows: np.ndarray, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """First noise spectrum and average image from unaligned particles.

    sigma^2(s) = (<|X|^2>_s - |<X>|^2_s) / 2, averaged over the coefficients of each shell,
    divided by the mask's mean square.

    Parameters
    ----------
    data : ParticleData
        Preprocessed particles.
    rows : np.ndarray
        The particles to use (int64).

    Returns
    -------
    sigma2 : torch.Tensor
        float64, shape (box // 2 + 1,).
    mean_image : torch.Tensor
        float32, shape (box, box).
    """
    box = data.box
    n_shells = box // 2 + 1
    power = torch.zeros(n_shells, dtype=torch.float64, device=data.device)
    for start in range(0, len(rows), batch):
        power += shell_power(to_half_plane_ft(data.images(rows[start:start + batch])), n_shells)
    mean = data.mean_image(rows)
    mean_power = shell_power(to_half_plane_ft(mean[None]), n_shells)
    counts = shell_pixel_counts(box, data.device)
    sigma2 = (power / max(len(rows), 1) - mean_power) / (2.0 * counts)
    return fill_small(sigma2) / float((data.mask**2).mean()), mean


def update_noise(power: torch.Tensor, n_weight: float, coef: Coefficients, sigma2_used: torch.Tensor,
                 parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], mask_power: float = 1.0) -> torch.Tensor:
    """New noise spectrum from an iteration's sums.

    The expected squared residual sum_i sum_pose G |X_i - C_i A'|^2 is rebuilt per shell from
    the sums the class update needs, so no per-sample, per-shell work is done in the E-step:
    sum |X|^2 - 2 Re sum conj(A') U sigma^2 + sum |A'|^2 V sigma^2, where U and V are the
    posterior-weighted sums of C X / sigma^2 and C^2 / sigma^2 for each reference A' used.

    Parameters
    ----------
    power : torch.Tensor
        float64, shape (S,), S = box // 2 + 1: sum over particles of |X|^2 per shell.
    n_weight : float
        Number of particles summed.
    coef : Coefficients
        The coefficients searched (shells below ``coef.radius``).
    sigma2_used : torch.Tensor
        The spectrum used in this E-step, float64, shape (S,).
    parts : list of (bank, U, V)
        The rotated class averages used (complex64, (r, m), one row per class and angle) with
        their U (complex128, (r, m)) and V (float64, (r, m)); fine and coarse grids alike.
    mask_power : float
        Mean square of the particle mask.

    Returns
    -------
    torch.Tensor
        float64, shape (S,).
    """
    n_shells = power.numel()
    cross = torch.zeros(coef.m, dtype=torch.float64, device=power.device)
    norm = torch.zeros_like(cross)
    for bank, weighted_images, weighted_ctf2 in parts:
        bank64 = bank.to(torch.complex128)
        cross += (bank64.conj() * weighted_images).real.sum(0)
        norm += (bank64.real**2 + bank64.imag**2).mul(weighted_ctf2).sum(0)
    zeros = torch.zeros(n_shells, dtype=torch.float64, device=power.device)
    cross_s = zeros.clone().index_add_(0, coef.shell, cross)
    norm_s = zeros.clone().index_add_(0, coef.shell, norm)
    diff2 = power - (2.0 * cross_s - norm_s) * sigma2_used
    counts = shell_pixel_counts(coef.box, power.device)
    sigma2 = diff2 / (2.0 * max(n_weight, 1e-12) * counts * mask_power)
    return fill_small(sigma2)
