"""Pose search: score particles against projections of a map over orientations and shifts.

Particles and projections are compared on a disc of Fourier coefficients (see
:mod:`cryosift.reconstruct.prepared`). The log-likelihood of pose (A, t) under Gaussian
noise of variance v(|k|) per coefficient is, up to a constant,

    L = sum_k w_k [2 Re(conj(Z_t) CTF P_A) - CTF^2 |P_A|^2] / v,

with Z_t the particle transform re-centred by origin t and w_k = 1/2 on the kx = 0 column
(its Friedel mates are in the half plane too). Scores may be divided by a temperature
(>= 1) that keeps early posteriors broad.
"""

from __future__ import annotations

import math

import torch

from cryosift.projection import Projector
from cryosift.reconstruct.particles import undo_origin
from cryosift.reconstruct.sampling import local_offsets


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
    r = proj.shape[0]
    out_o, out_s, out_v = [], [], []
    for _, score in _score_chunks(values, ctf, weight, proj, freqs, shifts_px, box, chunk):
        flat = score.reshape(score.shape[0], -1) / temperature
        v, i = torch.topk(flat, min(top, flat.shape[1]), dim=1)
        out_o.append(i % r)
        out_s.append(i // r)
        out_v.append(v)
    return torch.cat(out_o), torch.cat(out_s), torch.cat(out_v)


def _score_chunks(values, ctf, weight, proj, freqs, shifts_px, box, chunk):
    """Yield (start, log-likelihoods (mc, S, R) at temperature 1) for chunks of particles.

    The cross term is one matrix product of the re-centred, weighted particles (real and
    imaginary parts side by side) with all sections; the CTF^2 |P|^2 term another.
    """
    s = shifts_px.shape[0]
    k = proj.shape[1] // 2
    pr = proj.T.contiguous()
    p2 = (proj[:, :k] ** 2 + proj[:, k:] ** 2).T.contiguous()
    for a in range(0, values.shape[0], chunk):
        x, c = values[a:a + chunk], ctf[a:a + chunk]
        mc = x.shape[0]
        z = undo_origin(x.repeat_interleave(s, 0), freqs, shifts_px.repeat(mc, 1), box)
        wc = (weight * c).repeat_interleave(s, 0)
        cross = torch.cat([z.real * wc, z.imag * wc], dim=1) @ pr
        yield a, 2.0 * cross.view(mc, s, -1) - ((weight * c * c) @ p2)[:, None, :]


def marginal_log_likelihood(values: torch.Tensor, ctf: torch.Tensor, weight: torch.Tensor, proj: torch.Tensor,
                            freqs: torch.Tensor, shifts_px: torch.Tensor, box: int, chunk: int = 64) -> torch.Tensor:
    """Log-likelihood of each particle averaged over a global grid of poses (uniform prior).

    Arguments as for :func:`global_search`. The particle's own |X|^2 term is left out, so
    values compare maps on the same particles, not particles with each other.

    Returns
    -------
    torch.Tensor
        float32, shape (m,).
    """
    out = []
    for _, score in _score_chunks(values, ctf, weight, proj, freqs, shifts_px, box, chunk):
        flat = score.reshape(score.shape[0], -1)
        out.append(torch.logsumexp(flat, dim=1) - math.log(flat.shape[1]))
    return torch.cat(out)


def calibrate_temperature(score: torch.Tensor, target_poses: float, floor: float = 1.0) -> float:
    """The temperature at which posteriors spread over ``target_poses`` poses on average.

    The spread is exp(entropy) of each particle's posterior (its effective number of
    poses), averaged in log over particles; bisection in log T.

    Parameters
    ----------
    score : torch.Tensor
        Log-likelihoods at temperature 1, shape (m, P).
    target_poses : float
        Wanted effective number of poses (>= 1).
    floor : float
        Lowest temperature returned (1 keeps posteriors no sharper than the likelihood).

    Returns
    -------
    float
        Temperature >= ``floor``.
    """
    def log_spread(t: float) -> float:
        logp = torch.log_softmax(score / t, dim=1)
        return float((-(logp.exp() * logp).sum(1)).mean())

    goal = math.log(max(target_poses, 1.0))
    if log_spread(floor) >= goal:
        return floor
    lo, hi = math.log(floor), math.log(floor) + 12.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if log_spread(math.exp(mid)) < goal:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


def marginal_search(values: torch.Tensor, ctf: torch.Tensor, weight: torch.Tensor, mult: torch.Tensor,
                    proj: torch.Tensor, freqs: torch.Tensor, shifts_px: torch.Tensor, box: int, temperature: float,
                    target_poses: float | None = None,
                    chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Expectation step over a whole global grid: posterior-weighted sums per grid orientation.

    Every particle is spread over all (orientation, shift) pairs by its tempered
    posterior, as in RELION's and cryoSPARC's marginalisation over poses; the sums per
    orientation are then inserted once per orientation (not once per particle).

    Parameters are those of :func:`global_search`, plus ``mult`` (0.5 on the kx = 0
    column, shape (K,)) and ``target_poses``: when given, the temperature is raised (never
    lowered) until posteriors of the first chunk spread over that many poses
    (:func:`calibrate_temperature`), which keeps early iterations from locking onto the
    random starting map.

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
    temperature : float
        The temperature used.
    """
    s, r, k = shifts_px.shape[0], proj.shape[0], proj.shape[1] // 2
    data = torch.zeros((r, 2 * k), device=values.device)
    wsum = torch.zeros((r, k), device=values.device)
    best_o, best_s, best_p = [], [], []
    for a, score in _score_chunks(values, ctf, weight, proj, freqs, shifts_px, box, chunk):
        mc = score.shape[0]
        if a == 0 and target_poses is not None:
            temperature = calibrate_temperature(score.reshape(mc, -1), target_poses, temperature)
        post = torch.softmax((score / temperature).reshape(mc, -1), dim=1)
        p, i = post.max(dim=1)
        best_o.append(i % r)
        best_s.append(i // r)
        best_p.append(p)
        c = ctf[a:a + mc]
        z = undo_origin(values[a:a + mc].repeat_interleave(s, 0), freqs, shifts_px.repeat(mc, 1), box)
        cm = (c * mult).repeat_interleave(s, 0)
        data += post.view(mc * s, r).T @ torch.cat([z.real * cm, z.imag * cm], dim=1)
        wsum += post.view(mc, s, r).sum(1).T @ (c * c * mult)
    return (torch.complex(data[:, :k], data[:, k:]), wsum, torch.cat(best_o), torch.cat(best_s), torch.cat(best_p),
            float(temperature))


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
