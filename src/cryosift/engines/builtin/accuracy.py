"""Per-class figures RELION reports: estimated resolution and alignment accuracies.

- rlnEstimatedResolution: the last shell, counting out from the centre, whose spectral
  signal-to-noise <sum G C^2 / sigma^2 x T tau2> is still >= 1 (MlModel::calculateTotalFourierCoverage).
- rlnAccuracyRotations / rlnAccuracyTranslationsAngst: for 10 particles, the in-plane
  rotation (or x or y shift) at which sum |C (F(pose) - F(pose + error))|^2 / (2 sigma^2)
  first exceeds -ln 0.01, growing the error in RELION's steps, averaged
  (MlOptimiser::calculateExpectedAngularErrors). Classes holding < 1 % get 999.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryosift.engines.builtin.grids import Coefficients
from cryosift.engines.builtin.rotation import padded_spectrum, sample_rotated
from cryosift.io.models import NO_RESOLUTION

P_VALUE = -math.log(0.01)  # 4.60517
INCR_SIZE = 10  # shells searched beyond the current resolution (RELION's --incr_size)


def estimated_resolution(data_vs_prior: torch.Tensor, box: int, pixel_size: float, class_prior: torch.Tensor) -> np.ndarray:
    """Resolution per class in Å (999 for empty classes or no resolved shell), float64, shape (K,)."""
    dvp = data_vs_prior.cpu().numpy()
    out = np.full(dvp.shape[0], NO_RESOLUTION)
    for k in range(dvp.shape[0]):
        # Counting starts at shell 1: the zero frequency only carries the average density.
        below = np.flatnonzero(dvp[k, 1:] < 1.0)
        maxres = below[0] if len(below) else dvp.shape[1] - 1
        if maxres > 0 and float(class_prior[k]) > 0:
            out[k] = box * pixel_size / maxres
    return out


def next_radius(data_vs_prior: torch.Tensor, class_prior: torch.Tensor, box: int, max_radius: int,
                minres_map: int = 5) -> int:
    """Shells to search next iteration: the best class's resolved shell + 10 (RELION), capped."""
    dvp = data_vs_prior.cpu().numpy()
    best = 0
    for k in range(dvp.shape[0]):
        if float(class_prior[k]) <= 0:
            continue
        below = np.flatnonzero(dvp[k, 1:box // 2] < 1.0)
        ires = (below[0] + 1 if len(below) else box // 2) - 1
        best = max(best, ires)
    best = max(best, minres_map)
    return int(min(best + INCR_SIZE, max_radius, box // 2))


def _error_schedule(kind: str) -> np.ndarray:
    """The errors RELION tries, in order, ending with the first one past the cap."""
    values, error = [], 0.0
    while True:
        if kind == "rotation":
            step = 0.05 if error < 0.2 else 0.1 if error < 1 else 0.2 if error < 2 else 0.5 if error < 5 else \
                1.0 if error < 10 else 2.0 if error < 20 else 5.0
            cap = 30.0
        else:
            step = 0.1 if error < 1 else 0.2 if error < 2 else 0.5 if error < 5 else 1.0 if error < 10 else 2.0
            cap = 10.0
        error = round(error + step, 10)
        values.append(error)
        if error > cap:
            return np.array(values)


def _first_exceeding(snr: torch.Tensor, schedule: np.ndarray) -> torch.Tensor:
    """First error whose snr > P_VALUE, else the last (past-cap) value; snr shape (n, len(schedule) - 1)."""
    over = torch.cat([snr > P_VALUE, torch.ones_like(snr[:, :1], dtype=torch.bool)], 1)
    first = torch.argmax(over.to(torch.int8), 1)
    return torch.as_tensor(schedule, dtype=torch.float64, device=snr.device)[first]


def alignment_accuracy(references: torch.Tensor, class_prior: torch.Tensor, coef: Coefficients, sigma2: torch.Tensor,
                       ctf: torch.Tensor, psi_deg: torch.Tensor, shift_axis: torch.Tensor,
                       pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected in-plane angular and translational accuracy per class.

    Parameters
    ----------
    references : torch.Tensor
        float32, shape (K, box, box): class averages.
    class_prior : torch.Tensor
        Shape (K,): class fractions.
    sigma2 : torch.Tensor
        float64, shape (box // 2 + 1,): noise spectrum.
    ctf : torch.Tensor
        float32, shape (n, m): CTF of the test particles at the coefficients.
    psi_deg : torch.Tensor
        Shape (n,): their in-plane angles.
    shift_axis : torch.Tensor
        Shape (n,), 0 (x) or 1 (y): the axis each test particle's shift error goes along.
    pixel_size : float
        Å/px.

    Returns
    -------
    rotations : np.ndarray
        Degrees, shape (K,).
    translations : np.ndarray
        Å, shape (K,).
    """
    k_classes = references.shape[0]
    rot_out, trans_out = np.full(k_classes, NO_RESOLUTION), np.full(k_classes, NO_RESOLUTION)
    if ctf.shape[0] == 0:
        return rot_out, trans_out
    rot_sched, trans_sched = _error_schedule("rotation"), _error_schedule("translation")
    keep = (coef.shell > 0).to(torch.float64)
    weight = (ctf.to(torch.float64) ** 2) * (keep / (2.0 * sigma2[coef.shell]))  # (n, m)
    psi = psi_deg.to(torch.float64)
    n = psi.numel()
    angles = torch.cat([psi[:, None], psi[:, None] + torch.as_tensor(rot_sched[:-1], dtype=torch.float64, device=psi.device)], 1)
    k_axis = torch.where(shift_axis[:, None] == 0, coef.kx[None], coef.ky[None]).to(torch.float64)  # (n, m)
    sh = torch.as_tensor(trans_sched[:-1], dtype=torch.float64, device=psi.device)
    phase_term = 2.0 * (1.0 - torch.cos(2.0 * math.pi * k_axis[:, None, :] * sh[None, :, None] / coef.box))  # (n, s, m)
    for k in range(k_classes):
        if float(class_prior[k]) < 0.01:
            continue
        spectrum = padded_spectrum(references[k:k + 1])
        f = sample_rotated(spectrum, coef, angles.reshape(1, -1).to(torch.float32))[0].reshape(n, -1, coef.m)
        f = f.to(torch.complex128)
        diff = f[:, 1:] - f[:, :1]
        snr_rot = ((diff.real**2 + diff.imag**2) * weight[:, None, :]).sum(-1)
        rot_out[k] = float(_first_exceeding(snr_rot, rot_sched).mean())
        power = (f[:, 0].real**2 + f[:, 0].imag**2) * weight  # (n, m)
        snr_trans = (phase_term * power[:, None, :]).sum(-1)
        trans_out[k] = float(_first_exceeding(snr_trans, trans_sched).mean()) * pixel_size
    return rot_out, trans_out
