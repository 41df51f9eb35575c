"""Class update (M-step): Wiener-like average per class, its regularisation and post-processing.

A_k(k) = sum_poses G C X~ / sigma^2  /  (sum_poses G C^2 / sigma^2 + 1 / (T tau2_k(|k|))),
with the particle images X~ rotated and shifted into the class frame, tau2_k the class
average's power spectrum / 2 (RELION, BackProjector::reconstruct), no prior in the lowest
``minres_map`` shells, and the weight floored at 1/1000 of its shell average.
"""

from __future__ import annotations

import torch

from cryosift.engines.builtin.grids import (
    Coefficients,
    from_half_plane_ft,
    half_plane_shells,
    phase_ramp,
    scatter_half_plane,
    to_half_plane_ft,
)
from cryosift.engines.builtin.rotation import rotate_coefficients, rotate_weights

MINRES_MAP = 5  # shells without the tau2 prior (RELION's --minres_map)


def class_frame_sums(weighted_images: torch.Tensor, weighted_ctf2: torch.Tensor, psi_deg: torch.Tensor,
                     coef: Coefficients, sigma2: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate the per-angle sums back into each class's frame and add them up.

    The 1 / sigma^2 weighting is taken out before interpolating (it jumps between shells and
    would make the interpolation ring) and put back afterwards: it does not change under rotation.

    Parameters
    ----------
    weighted_images : torch.Tensor
        complex128, shape (K, p, m): sum of G C X / sigma^2 per class and in-plane angle.
    weighted_ctf2 : torch.Tensor
        float64, shape (K, p, m): sum of G C^2 / sigma^2.
    psi_deg : torch.Tensor
        The p angles, degrees.
    sigma2 : torch.Tensor
        float64, shape (box // 2 + 1,): the noise spectrum used in the E-step.

    Returns
    -------
    numerator : torch.Tensor
        complex128, shape (K, m).
    denominator : torch.Tensor
        float64, shape (K, m).
    """
    k, p, m = weighted_images.shape
    dev = weighted_images.device
    s2 = sigma2.to(dev)[coef.shell]
    flat_u = weighted_images.reshape(k * p, m)
    flat_v = weighted_ctf2.reshape(k * p, m)
    used = torch.nonzero(flat_v.amax(1) > 0).reshape(-1)  # (class, angle) pairs that received weight
    angles = (-psi_deg.to(dev, torch.float64)).repeat(k)
    num = torch.zeros((k, m), dtype=torch.complex128, device=dev)
    den = torch.zeros((k, m), dtype=torch.float64, device=dev)
    for start in range(0, len(used), chunk):
        rows = used[start:start + chunk]
        u, v = flat_u[rows] * s2, flat_v[rows] * s2
        scale = u.abs().amax(1, keepdim=True).clamp_min(1e-300)  # keep float32 in range
        vscale = v.amax(1, keepdim=True).clamp_min(1e-300)
        rot_u = rotate_coefficients((u / scale).to(torch.complex64), coef, angles[rows]).to(torch.complex128) * scale
        rot_v = rotate_weights((v / vscale).to(torch.float32), coef, angles[rows]).to(torch.float64) * vscale
        onehot = torch.nn.functional.one_hot(rows // p, k).T.to(torch.float64)  # (K, rows): a deterministic sum
        num += torch.complex(onehot @ rot_u.real, onehot @ rot_u.imag)
        den += onehot @ rot_v
    return num / s2, den / s2


def tau2_spectrum(references: torch.Tensor, n_shells: int) -> torch.Tensor:
    """tau2_k(s) = mean over shell s of |A_k|^2 / 2, float64, shape (K, n_shells)."""
    ft = to_half_plane_ft(references)
    box = references.shape[-1]
    shell, independent = half_plane_shells(box, references.device)
    sel = independent & (shell < n_shells)
    power = (ft.real**2 + ft.imag**2).to(torch.float64)[:, sel]
    idx = shell[sel]
    sums = torch.zeros((references.shape[0], n_shells), dtype=torch.float64, device=references.device)
    sums.index_add_(1, idx, power)
    counts = torch.bincount(idx, minlength=n_shells)[:n_shells].to(torch.float64)
    return sums / counts.clamp_min(1) / 2.0


def wiener_update(numerator: torch.Tensor, denominator: torch.Tensor, tau2: torch.Tensor, tau2_fudge: float,
                  coef: Coefficients, n_shells: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regularised class averages and their spectral signal-to-noise.

    Parameters
    ----------
    numerator, denominator : torch.Tensor
        From :func:`class_frame_sums`, shapes (K, m).
    tau2 : torch.Tensor
        float64, shape (K, n_shells): prior power per shell.
    tau2_fudge : float
        T.

    Returns
    -------
    averages : torch.Tensor
        complex128, shape (K, m): class-average coefficients.
    data_vs_prior : torch.Tensor
        float64, shape (K, n_shells): <den x T tau2> per shell (0 beyond the searched shells).
    coverage : torch.Tensor
        float64, shape (K, n_shells): fraction of coefficients with den x T tau2 >= 1.
    """
    shell = coef.shell
    t2 = tau2[:, shell]  # (K, m)
    den = denominator
    positive = t2 > 0
    inv_tau2 = torch.where(positive, 1.0 / (tau2_fudge * t2.clamp_min(1e-300)),
                           torch.where(den > 1e-20, 1.0 / (0.001 * den.clamp_min(1e-300)), torch.zeros_like(den)))
    ratio = torch.where(inv_tau2 > 0, den / inv_tau2.clamp_min(1e-300), torch.zeros_like(den))
    weight = den + torch.where(shell >= MINRES_MAP, inv_tau2, torch.zeros_like(inv_tau2))
    counts = torch.bincount(shell, minlength=n_shells)[:n_shells].to(torch.float64).clamp_min(1)
    radial = torch.zeros((den.shape[0], n_shells), dtype=torch.float64, device=den.device).index_add_(1, shell, weight)
    floor = (radial / counts / 1000.0)[:, shell]
    weight = torch.maximum(weight, floor)
    averages = torch.where(weight > 0, numerator / weight.clamp_min(1e-300), torch.zeros_like(numerator))
    dvp = torch.zeros((den.shape[0], n_shells), dtype=torch.float64, device=den.device).index_add_(1, shell, ratio) / counts
    cover = torch.zeros_like(dvp).index_add_(1, shell, (ratio >= 1).to(torch.float64)) / counts
    searched = torch.arange(n_shells, device=den.device) < coef.radius
    return averages, dvp * searched, cover * searched


def finish_averages(averages: torch.Tensor, coef: Coefficients, mask: torch.Tensor, center: bool,
                    max_shift_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-space class averages, re-centred on their centre of mass and masked.

    Parameters
    ----------
    averages : torch.Tensor
        complex, shape (K, m).
    mask : torch.Tensor
        float32, shape (box, box): the soft circular mask.
    center : bool
        Shift each average so the centre of mass of its positive density sits at box // 2.
    max_shift_px : float
        Largest re-centring shift (the offset search range), px.

    Returns
    -------
    images : torch.Tensor
        float32, shape (K, box, box).
    shifts : torch.Tensor
        float64, shape (K, 2): (x, y) px each average was moved by.
    """
    values = averages.to(torch.complex64)
    images = from_half_plane_ft(scatter_half_plane(coef, values), coef.box)
    shifts = torch.zeros((values.shape[0], 2), dtype=torch.float64, device=values.device)
    if center:
        c = torch.arange(coef.box, device=values.device, dtype=torch.float64) - coef.box // 2
        density = (images.to(torch.float64) * mask).clamp_min(0)
        total = density.sum((1, 2))
        ok = total > 0
        com_x = (density.sum(1) * c).sum(1) / total.clamp_min(1e-300)
        com_y = (density.sum(2) * c).sum(1) / total.clamp_min(1e-300)
        com = torch.stack([com_x, com_y], 1) * ok[:, None]
        length = com.norm(dim=1, keepdim=True)
        com = torch.where(length > max_shift_px, com * (max_shift_px / length.clamp_min(1e-12)), com)
        shifts = -com
        # A shift by +s multiplies the transform by exp(-2 pi i k.s / box), i.e. phase_ramp(-s).
        values = values * phase_ramp(coef, -shifts.to(torch.float32))
        images = from_half_plane_ft(scatter_half_plane(coef, values), coef.box)
    return images * mask, shifts


def split_largest(references: torch.Tensor, class_prior: torch.Tensor, prior_offsets: torch.Tensor,
                  data_vs_prior: torch.Tensor, mask: torch.Tensor, threshold: float, rng,
                  strength: float = 0.25) -> list[tuple[int, int]]:
    """Re-seed near-empty classes by splitting the largest ones (in place).

    A class holding less than ``threshold`` of the particles is replaced by a copy of the
    currently largest class; the two copies are pushed apart by a random perturbation with
    the class's own power spectrum over its resolved shells (``strength`` of its amplitude),
    and share that class's fraction. EM then moves them towards the two most different
    subsets of its particles, so merged views separate and dead classes come back to life.

    Parameters
    ----------
    references : torch.Tensor
        float32, shape (K, box, box): class averages (modified).
    class_prior : torch.Tensor
        float64, shape (K,) (modified).
    prior_offsets : torch.Tensor
        float64, shape (K, 2) (modified).
    data_vs_prior : torch.Tensor
        float64, shape (K, box // 2 + 1): spectral SNR, to find each class's resolved shells.
    mask : torch.Tensor
        float32, shape (box, box).
    threshold : float
        Smallest class fraction left alone.
    rng : np.random.Generator
        Source of the perturbations (seeded by the caller).

    Returns
    -------
    list of (int, int)
        (re-seeded class, class it was split from), 0-based.
    """
    box = references.shape[-1]
    shell, independent = half_plane_shells(box, references.device)
    done = []
    for small in torch.argsort(class_prior).tolist():
        if float(class_prior[small]) >= threshold:
            break
        big = int(torch.argmax(class_prior))
        if big == small:
            break
        ft = to_half_plane_ft(references[big:big + 1])[0]
        dvp = data_vs_prior[big]
        below = torch.nonzero(dvp[1:] < 1.0)
        resolved = int(below[0]) + 1 if len(below) else dvp.numel()
        power = ft.real**2 + ft.imag**2
        sel = independent & (shell >= 1) & (shell < max(resolved, 2))
        noise = torch.complex(*(torch.as_tensor(rng.normal(size=(2,) + tuple(ft.shape)), dtype=torch.float32,
                                                device=ft.device)))
        # Match the class's amplitude per shell.
        n_shells = box // 2 + 1
        shell_power = torch.zeros(n_shells, dtype=torch.float64, device=ft.device).index_add_(
            0, shell[sel], power[sel].to(torch.float64))
        counts = torch.bincount(shell[sel], minlength=n_shells)[:n_shells].clamp_min(1)
        amp = torch.sqrt(shell_power / counts).to(torch.float32)[shell.clamp_max(n_shells - 1)]
        delta = torch.where(sel, noise * amp * (strength / 2**0.5), torch.zeros_like(noise))
        delta_img = from_half_plane_ft(delta[None], box)[0] * mask
        base = references[big].clone()
        references[big] = base + delta_img
        references[small] = base - delta_img
        half = class_prior[big] / 2 + class_prior[small] / 2
        class_prior[big] = class_prior[small] = half
        prior_offsets[small] = prior_offsets[big]
        done.append((int(small), big))
    class_prior /= class_prior.sum()
    return done
