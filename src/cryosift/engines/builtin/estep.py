"""E-step: run the search over batches of particles and collect the sums the M-step needs.

Sums are kept in float64 (float32 batches are added into them), so results do not depend
on accumulation order beyond float64 rounding; on CUDA the scatter-adds run in PyTorch's
deterministic mode, so a run is reproducible for a given seed and device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryosift.device import deterministic_gpu
from cryosift.engines.builtin.grids import Coefficients, phase_ramp, shell_power, to_half_plane_ft
from cryosift.engines.builtin.search import BatchPosterior, ReferenceBank, SearchGrid, search


@dataclass
class Sums:
    """Posterior-weighted sums over the particles of one iteration.

    Attributes
    ----------
    weighted_images : torch.Tensor
        complex128, shape (K, pf, m): sum of G C X~ / sigma^2 per class and fine angle (image frame).
    weighted_ctf2 : torch.Tensor
        float64, shape (K, pf, m): sum of G C^2 / sigma^2.
    coarse_images, coarse_ctf2 : torch.Tensor
        The same on the coarse angles, shapes (K, pc, m), for particles with a broad posterior.
    class_weight : torch.Tensor
        float64, shape (K,): soft particle count per class.
    offset_sum : torch.Tensor
        float64, shape (K, 2): sum of G x offset (px) per class.
    offset_d2 : float
        sum of G |offset - class prior centre|^2, px^2.
    power : torch.Tensor
        float64, shape (box // 2 + 1,): sum of |X|^2 per shell.
    n : float
        Particles summed.
    log_likelihood : float
        Sum of the particles' log-likelihoods.
    max_prob : float
        Sum of the particles' largest posterior probability.
    """

    weighted_images: torch.Tensor
    weighted_ctf2: torch.Tensor
    coarse_images: torch.Tensor
    coarse_ctf2: torch.Tensor
    class_weight: torch.Tensor
    offset_sum: torch.Tensor
    offset_d2: float
    power: torch.Tensor
    n: float = 0.0
    log_likelihood: float = 0.0
    max_prob: float = 0.0

    @classmethod
    def zeros(cls, n_classes: int, n_coarse_psi: int, n_fine_psi: int, coef: Coefficients, device) -> "Sums":
        m = coef.m
        return cls(torch.zeros((n_classes, n_fine_psi, m), dtype=torch.complex128, device=device),
                   torch.zeros((n_classes, n_fine_psi, m), dtype=torch.float64, device=device),
                   torch.zeros((n_classes, n_coarse_psi, m), dtype=torch.complex128, device=device),
                   torch.zeros((n_classes, n_coarse_psi, m), dtype=torch.float64, device=device),
                   torch.zeros(n_classes, dtype=torch.float64, device=device),
                   torch.zeros((n_classes, 2), dtype=torch.float64, device=device), 0.0,
                   torch.zeros(coef.box // 2 + 1, dtype=torch.float64, device=device))


@dataclass
class ParticleUpdate:
    """Per-particle results of an E-step batch (numpy, for the data table)."""

    rows: np.ndarray
    classes: np.ndarray
    psi: np.ndarray
    offsets: np.ndarray
    max_prob: np.ndarray
    log_likelihood: np.ndarray
    n_significant: np.ndarray


def accumulate(sums: Sums, post: BatchPosterior, ctf2_w: torch.Tensor, coef: Coefficients, grid: SearchGrid,
               offsets: torch.Tensor, prior_offsets: torch.Tensor, class_of_particle: torch.Tensor | None = None) -> None:
    """Add one batch's posterior-weighted images, weights, class and offset statistics to ``sums``."""
    _accumulate_refined(sums, post, ctf2_w, coef, grid, offsets, prior_offsets)
    if len(post.broad):
        _accumulate_broad(sums, post, ctf2_w, grid, offsets, prior_offsets, class_of_particle)


def _add_offsets(sums: Sums, weights: torch.Tensor, classes: torch.Tensor, positions: torch.Tensor,
                 prior_offsets: torch.Tensor) -> None:
    """Add class weights and offset sums: ``weights`` (r, s) of the offsets ``positions`` (r, s, 2), px,
    each row in class ``classes`` (r,)."""
    k = sums.class_weight.shape[0]
    w = weights.to(torch.float64)
    o = positions.to(torch.float64)
    onehot = torch.nn.functional.one_hot(classes, k).to(torch.float64)  # (r, K)
    sums.class_weight += w.sum(1) @ onehot
    sums.offset_sum += onehot.T @ (w[:, :, None] * o).sum(1)
    d = o - prior_offsets.to(torch.float64)[classes][:, None, :]
    sums.offset_d2 += float((w * (d * d).sum(-1)).sum())


def _accumulate_refined(sums: Sums, post: BatchPosterior, ctf2_w: torch.Tensor, coef: Coefficients,
                        grid: SearchGrid, offsets: torch.Tensor, prior_offsets: torch.Tensor) -> None:
    """Sums over the refined (fine) samples: one scatter-add per batch into (class, fine angle) rows."""
    k, pf, m = sums.weighted_images.shape
    ns = post.weights.shape[1]
    dev = post.weights.device
    ramp = phase_ramp(coef, grid.dtrans.to(dev, torch.float32))  # (st, m)
    w = post.weights  # (r, ns, st)
    # sum_s G[s] e^{2 pi i k.d_s} X~  ->  one complex vector per row and fine angle
    mix = torch.complex(w @ ramp.real, w @ ramp.imag)  # (r, ns, m)
    contrib = (post.images[:, None, :] * mix).reshape(-1, m)
    fine_psi = post.row_psi[:, None] * ns + torch.arange(ns, device=dev)[None]
    target = (post.row_class[:, None] * pf + fine_psi).reshape(-1)
    weights_ctf = (ctf2_w[post.row_particle][:, None, :] * w.sum(2)[:, :, None]).reshape(-1, m)
    if dev.type == "cuda":
        deterministic_gpu()  # index_add_ adds in a fixed order only in PyTorch's deterministic mode
    torch.view_as_real(sums.weighted_images).reshape(k * pf, m, 2).index_add_(
        0, target, torch.view_as_real(contrib).to(torch.float64))
    sums.weighted_ctf2.reshape(k * pf, m).index_add_(0, target, weights_ctf.to(torch.float64))
    positions = (offsets[post.row_particle] + grid.trans.to(dev, torch.float32)[post.row_trans])[:, None, :] \
        + grid.dtrans.to(dev, torch.float32)[None]  # (r, st, 2)
    _add_offsets(sums, w.sum(1), post.row_class, positions, prior_offsets)


def _accumulate_broad(sums: Sums, post: BatchPosterior, ctf2_w: torch.Tensor, grid: SearchGrid,
                      offsets: torch.Tensor, prior_offsets: torch.Tensor, class_of_particle: torch.Tensor | None) -> None:
    """Dense sums over the whole coarse grid for particles with a broad posterior: two matrix products."""
    k, pc, m = sums.coarse_images.shape
    w = post.broad_weights  # (q, t, n_ref, pc)
    q, t = w.shape[0], w.shape[1]
    if class_of_particle is not None:  # one reference; each particle's weights go to its fixed class
        fixed = class_of_particle[post.broad]
        full = torch.zeros((q, t, k, pc), dtype=w.dtype, device=w.device)
        full[torch.arange(q, device=w.device), :, fixed] = w[:, :, 0]
        w = full
    wm = w.reshape(q * t, k * pc)
    images = torch.view_as_real(post.broad_images).reshape(q * t, 2 * m)
    torch.view_as_real(sums.coarse_images).view(k * pc, m, 2).add_((wm.T @ images).reshape(k * pc, m, 2).to(torch.float64))
    sums.coarse_ctf2.view(k * pc, m).add_((w.sum(1).reshape(q, k * pc).T @ ctf2_w[post.broad]).to(torch.float64))
    classes = torch.arange(k, device=w.device)
    per_class = w.sum(3).permute(0, 2, 1).reshape(q * k, t)  # (q*K, t)
    positions = (offsets[post.broad][:, None, :] + grid.trans.to(w.device, torch.float32)[None])  # (q, t, 2)
    _add_offsets(sums, per_class, classes.repeat(q), positions.repeat_interleave(k, 0), prior_offsets)


def expectation(data, rows: np.ndarray, batch_size: int, coef: Coefficients, grid: SearchGrid, bank: ReferenceBank,
                sigma2: torch.Tensor, offsets: np.ndarray, log_class_prior: torch.Tensor, prior_offsets: torch.Tensor,
                sigma2_offset_px: float, params, sums: Sums, class_of_particle: np.ndarray | None = None,
                precision: str = "fp32", coarse_m: int | None = None, progress=None) -> list[ParticleUpdate]:
    """Search every particle in ``rows`` (in batches) and add the results into ``sums``.

    Parameters
    ----------
    data : ParticleData
        Preprocessed images and CTFs.
    rows : np.ndarray
        Particles to process, int64.
    sigma2 : torch.Tensor
        float64, shape (box // 2 + 1,): noise spectrum.
    offsets : np.ndarray
        float64, shape (n, 2): every particle's previous offset, px.
    class_of_particle : np.ndarray, optional
        int64, shape (n,): fixed classes (first iteration's random seeds).
    coarse_m : int, optional
        Coefficients used in the coarse pass (see :func:`search`).

    Returns
    -------
    list of ParticleUpdate
        One per batch.
    """
    dev = data.device
    inv_s2 = (1.0 / sigma2[coef.shell]).to(dev, torch.float32)
    n_shells = coef.box // 2 + 1
    updates = []
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        ft = to_half_plane_ft(data.images(r))
        sums.power += shell_power(ft, n_shells)
        x = coef.gather(ft)
        ctf = coef.gather(data.ctf(r))
        ctf_w, ctf2_w = ctf * inv_s2, ctf * ctf * inv_s2
        off = torch.as_tensor(offsets[r], dtype=torch.float32, device=dev)
        fixed = None if class_of_particle is None else torch.as_tensor(class_of_particle[r], device=dev)
        post = search(x, ctf_w, ctf2_w, off, coef, grid, bank, log_class_prior, prior_offsets, sigma2_offset_px,
                      params.adaptive_fraction, params.max_significant, params.hard, fixed, precision, coarse_m)
        accumulate(sums, post, ctf2_w, coef, grid, off, prior_offsets, fixed)
        x2 = ((x.real**2 + x.imag**2) * inv_s2).sum(1).to(torch.float64)
        log_like = post.log_evidence - 0.5 * x2
        new_off = off + post.best_shift
        sums.n += len(r)
        sums.log_likelihood += float(log_like.sum())
        sums.max_prob += float(post.max_prob.sum())
        updates.append(ParticleUpdate(
            rows=np.asarray(r), classes=post.best_class.cpu().numpy(), psi=post.best_psi.cpu().numpy(),
            offsets=new_off.to(torch.float64).cpu().numpy(), max_prob=post.max_prob.cpu().numpy().astype(np.float64),
            log_likelihood=log_like.cpu().numpy(), n_significant=post.n_significant.cpu().numpy()))
        if progress is not None:
            progress(len(r))
    return updates
