"""Alignment search: scores of every particle against every class, in-plane angle and offset.

Log-likelihoods, up to a per-particle constant, are
ln P(X | k, psi, t) = Re sum_k X(k) e^{2 pi i k.t/box} C(k) conj(A_k,psi(k)) / sigma^2 - 1/2 sum C^2 |A_k,psi|^2 / sigma^2.
The first term for all offsets and all rotated class averages is one real matrix product
(batch x offsets, 2m) @ (2m, classes x angles); the second a (batch, m) @ (m, classes x angles)
product. This coarse pass may run in reduced precision on CUDA because it only chooses
candidates: the samples holding ``adaptive_fraction`` of the posterior mass are re-scored in
float32 on the finer grid of RELION's adaptive oversampling, and only those enter the
posterior and the sums of the class update.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from cryosift.engines.builtin.grids import Coefficients, oversampled, phase_ramp, psi_angles, translations
from cryosift.engines.builtin.rotation import padded_spectrum, sample_rotated


@dataclass
class SearchGrid:
    """Coarse in-plane angles and offsets and the oversampled sub-samples of each.

    Attributes
    ----------
    psi : torch.Tensor
        float64, shape (pc,): coarse angles, degrees.
    dpsi : torch.Tensor
        float64, shape (ns,): fine angle = coarse + dpsi[j].
    trans : torch.Tensor
        float64, shape (t, 2): coarse offsets from the previous offset, (x, y) px.
    dtrans : torch.Tensor
        float64, shape (st, 2): fine offset = coarse + dtrans[s].
    """

    psi: torch.Tensor
    dpsi: torch.Tensor
    trans: torch.Tensor
    dtrans: torch.Tensor

    @classmethod
    def make(cls, psi_step: float, offset_range: float, offset_step: float, oversampling: int) -> "SearchGrid":
        psi = psi_angles(psi_step)
        step = 360.0 / len(psi)
        dpsi, dtrans = oversampled(step, offset_step, oversampling)
        return cls(psi, dpsi, translations(offset_range, offset_step), dtrans)

    @property
    def fine_psi(self) -> torch.Tensor:
        """All fine angles, index pc * ns + j, degrees, float64."""
        return (self.psi[:, None] + self.dpsi[None]).reshape(-1)

    def to(self, device) -> "SearchGrid":
        return SearchGrid(*(t.to(device) for t in (self.psi, self.dpsi, self.trans, self.dtrans)))


@dataclass
class ReferenceBank:
    """Class averages rotated to every coarse and fine angle, at the searched coefficients.

    Attributes
    ----------
    coarse : torch.Tensor
        complex64, shape (K * pc, m).
    coarse_real : torch.Tensor
        float32 (or the coarse dtype), shape (K * pc, 2m): real/imaginary interleaved.
    coarse_power : torch.Tensor
        float32, shape (K * pc, m): |A|^2.
    fine : torch.Tensor
        complex64, shape (K, pc, ns, m).
    fine_power : torch.Tensor
        float32, shape (K * pc * ns, m).
    """

    coarse: torch.Tensor
    coarse_real: torch.Tensor
    coarse_power: torch.Tensor
    fine: torch.Tensor
    fine_power: torch.Tensor

    @classmethod
    def build(cls, references: torch.Tensor, coef: Coefficients, grid: SearchGrid,
              coarse_dtype: torch.dtype = torch.float32) -> "ReferenceBank":
        spectrum = padded_spectrum(references)
        k, pc, ns = references.shape[0], len(grid.psi), len(grid.dpsi)
        coarse = sample_rotated(spectrum, coef, grid.psi.to(torch.float32))  # (K, pc, m)
        fine = coarse[:, :, None] if ns == 1 and float(grid.dpsi[0]) == 0.0 else \
            sample_rotated(spectrum, coef, grid.fine_psi.to(torch.float32)).reshape(k, pc, ns, coef.m)
        coarse_real = torch.view_as_real(coarse).reshape(k * pc, 2 * coef.m).to(coarse_dtype).contiguous()
        power = lambda z: (z.real**2 + z.imag**2)  # noqa: E731
        return cls(coarse.reshape(k * pc, coef.m), coarse_real, power(coarse).reshape(k * pc, coef.m), fine.contiguous(),
                   power(fine).reshape(k * pc * ns, coef.m))

    @property
    def fine_flat(self) -> torch.Tensor:
        """complex64, shape (K * pc * ns, m)."""
        return self.fine.reshape(-1, self.fine.shape[-1])


@dataclass
class BatchPosterior:
    """Outcome of the search for one batch of b particles.

    For every particle the most probable coarse samples (those holding ``adaptive_fraction``
    of the posterior, at most ``max_significant``) are refined: the rows are these samples,
    each with its oversampled fine samples. When they hold less than ``adaptive_fraction``
    ("broad" posteriors: early iterations, junk), the rest of the coarse posterior is kept
    at coarse sampling.

    Attributes
    ----------
    row_particle, row_class, row_trans, row_psi : torch.Tensor
        int64, shape (r,): batch position, class (0-based), coarse offset and coarse angle index.
    weights : torch.Tensor
        float32, shape (r, ns, st): posterior of each fine sample (all weights of a particle,
        fine and coarse, sum to 1).
    images : torch.Tensor
        complex64, shape (r, m): C X e^{2 pi i k.(o + t)} / sigma^2 of the row's particle at its coarse offset.
    broad : torch.Tensor
        int64, shape (q,): batch positions of the broad particles.
    broad_weights : torch.Tensor
        float32, shape (q, t, n_ref, pc): their coarse posterior outside the refined samples.
    broad_images : torch.Tensor
        complex64, shape (q, t, m): their C X e^{...} / sigma^2 at every coarse offset.
    log_evidence : torch.Tensor
        float64, shape (b,): log of the summed likelihood x prior (up to the per-particle constant).
    best_class : torch.Tensor
        int64, shape (b,): class of the most probable sample.
    best_psi : torch.Tensor
        float64, shape (b,): its in-plane angle, degrees.
    best_shift : torch.Tensor
        float32, shape (b, 2): its offset from the previous one, px.
    max_prob : torch.Tensor
        float32, shape (b,).
    n_significant : torch.Tensor
        int64, shape (b,): coarse samples holding ``adaptive_fraction`` of the posterior.
    """

    row_particle: torch.Tensor
    row_class: torch.Tensor
    row_trans: torch.Tensor
    row_psi: torch.Tensor
    weights: torch.Tensor
    images: torch.Tensor
    broad: torch.Tensor
    broad_weights: torch.Tensor
    broad_images: torch.Tensor
    log_evidence: torch.Tensor
    best_class: torch.Tensor
    best_psi: torch.Tensor
    best_shift: torch.Tensor
    max_prob: torch.Tensor
    n_significant: torch.Tensor


@contextlib.contextmanager
def _tf32(enabled: bool):
    if not enabled:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _samples_holding(post: torch.Tensor, fraction: float) -> torch.Tensor:
    """How many of the largest entries of each row of ``post`` (q, n) sum to ``fraction`` (int64, (q,))."""
    if post.device.type == "cpu":  # numpy's sort is much faster than torch's on the CPU
        ordered = torch.from_numpy(-np.sort(-post.numpy(), axis=1))
    else:
        ordered = torch.sort(post, 1, descending=True)[0]
    return ((torch.cumsum(ordered, 1) - ordered) < fraction).sum(1).to(post.device)


def _offset_log_prior(offsets: torch.Tensor, centres: torch.Tensor, inv_two_sigma2: float) -> torch.Tensor:
    """-|o - centre|^2 / (2 sigma^2) for offsets (..., 2) and centres broadcastable to them."""
    d = offsets - centres
    return -(d * d).sum(-1) * inv_two_sigma2


def search(x: torch.Tensor, ctf_w: torch.Tensor, ctf2_w: torch.Tensor, offsets: torch.Tensor, coef: Coefficients,
           grid: SearchGrid, bank: ReferenceBank, log_class_prior: torch.Tensor, prior_offsets: torch.Tensor,
           sigma2_offset_px: float, adaptive_fraction: float, max_significant: int, hard: bool,
           class_of_particle: torch.Tensor | None = None, precision: str = "fp32",
           coarse_m: int | None = None) -> BatchPosterior:
    """Posterior over classes, in-plane angles and offsets for a batch of particles.

    Parameters
    ----------
    x : torch.Tensor
        complex64, shape (b, m): particle coefficients.
    ctf_w, ctf2_w : torch.Tensor
        float32, shape (b, m): C / sigma^2 and C^2 / sigma^2.
    offsets : torch.Tensor
        float32, shape (b, 2): previous offsets (x, y), px; the search is centred on them.
    log_class_prior : torch.Tensor
        float32, shape (K,): ln pi_k (ignored with ``class_of_particle``).
    prior_offsets : torch.Tensor
        float32, shape (K, 2): centre of each class's offset prior, px.
    sigma2_offset_px : float
        Variance of the offset prior, px^2.
    class_of_particle : torch.Tensor, optional
        int64, shape (b,): fixed classes (the random seeds of the first iteration); the
        bank then holds a single reference.
    precision : str
        ``fp32``, ``tf32`` or ``bf16`` for the coarse product (CUDA only).
    coarse_m : int, optional
        Coefficients (the lowest shells, as ``coef`` is sorted by shell) used in the coarse
        pass; finer samples resolve finer detail, so the coarse pass needs less (RELION's
        coarse image size). Default: all.
    """
    b, m = x.shape
    dev = x.device
    n_ref, pc = bank.fine.shape[0], bank.fine.shape[1]
    ns, st = bank.fine.shape[2], grid.dtrans.shape[0]
    trans = grid.trans.to(dev, torch.float32)
    t = trans.shape[0]
    inv2s = 0.5 / max(sigma2_offset_px, 1e-12)
    xs = x * phase_ramp(coef, offsets)  # undo the previous offset
    y = (xs * ctf_w)[:, None, :] * phase_ramp(coef, trans)[None]  # (b, t, m)

    # ---- coarse pass: every class x angle x offset, on the lowest coarse_m coefficients
    mc = m if coarse_m is None else int(min(coarse_m, m))
    with _tf32(precision == "tf32" and dev.type == "cuda"):
        yr = torch.view_as_real(y[:, :, :mc]).reshape(b * t, 2 * mc)
        cross = (yr.to(bank.coarse_real.dtype) @ bank.coarse_real[:, :2 * mc].T).to(torch.float32)
    norm = ctf2_w[:, :mc] @ bank.coarse_power[:, :mc].T  # (b, n_ref * pc)
    logp = cross.reshape(b, t, n_ref, pc) - 0.5 * norm.reshape(b, 1, n_ref, pc)
    o_coarse = offsets[:, None, :] + trans[None]  # (b, t, 2)
    if class_of_particle is None:
        logp += (log_class_prior[None, None, :] + _offset_log_prior(o_coarse[:, :, None, :], prior_offsets[None, None],
                                                                     inv2s))[..., None]
    else:
        logp += _offset_log_prior(o_coarse, prior_offsets[class_of_particle][:, None, :], inv2s)[:, :, None, None]
    flat = logp.reshape(b, -1)
    lse = torch.logsumexp(flat, 1)  # float32 is enough: values are relative to each particle's maximum
    n_cand = min(max_significant, flat.shape[1])
    top_val, top_idx = torch.topk(flat, n_cand, dim=1, sorted=True)
    mass = torch.exp(top_val - lse[:, None])
    cum = torch.cumsum(mass, 1)
    keep = (cum - mass) < adaptive_fraction
    keep[:, 0] = True
    broad = (cum[:, -1] < adaptive_fraction) if n_cand < flat.shape[1] else torch.zeros(b, dtype=torch.bool, device=dev)
    n_sig = keep.sum(1)
    broad_idx = torch.nonzero(broad).reshape(-1)
    # Mass the refined samples stand for: all of it for concentrated posteriors, what the top
    # candidates hold for broad ones (their remaining samples are kept at coarse sampling).
    refined_mass = torch.where(broad, cum[:, -1], torch.ones_like(cum[:, -1]))

    # ---- fine pass on the significant samples, float32
    rows_b, rows_c = torch.nonzero(keep, as_tuple=True)
    idx = top_idx[rows_b, rows_c]
    r_t = idx // (n_ref * pc)
    r_ref = (idx // pc) % n_ref
    r_psi = idx % pc
    y_rows = y[rows_b, r_t]  # (r, m)
    refs = bank.fine[r_ref, r_psi]  # (r, ns, m)
    z = y_rows[:, None, :] * refs.conj()
    ramp = phase_ramp(coef, grid.dtrans.to(dev, torch.float32))  # (st, m)
    ramp_real = torch.stack([ramp.real, -ramp.imag], -1).reshape(st, 2 * m)
    cross_f = torch.view_as_real(z).reshape(-1, ns, 2 * m) @ ramp_real.T  # (r, ns, st)
    fine_index = (r_ref * pc + r_psi)[:, None] * ns + torch.arange(ns, device=dev)[None]  # (r, ns)
    norm_f = (ctf2_w[rows_b, None, :] * bank.fine_power[fine_index]).sum(-1)  # (r, ns)
    o_fine = (offsets[rows_b] + trans[r_t])[:, None, :] + grid.dtrans.to(dev, torch.float32)[None]  # (r, st, 2)
    r_class = r_ref if class_of_particle is None else class_of_particle[rows_b]
    prior = _offset_log_prior(o_fine, prior_offsets[r_class][:, None, :], inv2s)  # (r, st)
    if class_of_particle is None:
        prior = prior + log_class_prior[r_class][:, None]
    logp_f = cross_f - 0.5 * norm_f[:, :, None] + prior[:, None, :]

    dense = torch.full((b, n_cand, ns, st), float("-inf"), device=dev)
    dense[rows_b, rows_c] = logp_f
    dense = dense.reshape(b, -1)
    lse_f = torch.logsumexp(dense, 1)
    post = torch.exp(dense - lse_f[:, None]) * refined_mass[:, None]
    best = torch.argmax(dense, 1)
    max_prob = post.gather(1, best[:, None])[:, 0]
    # Evidence on the coarse grid's scale (the fine grid has ns x st samples per coarse one).
    log_evidence = torch.where(broad, lse, lse_f - math.log(ns * st))

    # ---- broad particles: the rest of their coarse posterior
    tail = torch.exp(flat[broad_idx] - lse[broad_idx, None]).scatter_(1, top_idx[broad_idx], 0.0)
    if len(broad_idx):
        n_sig[broad_idx] = _samples_holding(torch.exp(flat[broad_idx] - lse[broad_idx, None]), adaptive_fraction)
        max_prob[broad_idx] = torch.maximum(max_prob[broad_idx], tail.amax(1))
    if hard:
        post = torch.zeros_like(post).scatter_(1, best[:, None], 1.0)
        tail.zero_()
    weights = post.reshape(b, n_cand, ns, st)[rows_b, rows_c]

    best_c = best // (ns * st)
    best_j = (best // st) % ns
    best_idx = top_idx.gather(1, best_c[:, None])[:, 0]
    best_ref = (best_idx // pc) % n_ref
    best_psi = grid.fine_psi.to(dev)[(best_idx % pc) * ns + best_j]
    best_shift = trans[best_idx // (n_ref * pc)] + grid.dtrans.to(dev, torch.float32)[best % st]
    best_class = best_ref if class_of_particle is None else class_of_particle
    return BatchPosterior(
        row_particle=rows_b, row_class=r_class, row_trans=r_t, row_psi=r_psi, weights=weights, images=y_rows,
        broad=broad_idx, broad_weights=tail.reshape(-1, t, n_ref, pc), broad_images=y[broad_idx],
        log_evidence=log_evidence.to(torch.float64), best_class=best_class, best_psi=best_psi, best_shift=best_shift,
        max_prob=max_prob, n_significant=n_sig)
