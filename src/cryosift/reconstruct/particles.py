"""Particle-side helpers for reconstruction: poses, CTFs, half sets and image transforms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryosift.ctf import ctf_2d
from cryosift.errors import InputError
from cryosift.io.models import CTF_LABELS, CTF_OPTICS_LABELS, ParticleSet
from cryosift.io.rotations import euler_to_matrix

POSE_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")


def common_pixel_size(pset: ParticleSet) -> float:
    """The one pixel size (Å/px) shared by all particles, or InputError (see :meth:`ParticleSet.common_pixel_size`)."""
    return pset.common_pixel_size()


def particle_poses(pset: ParticleSet) -> tuple[np.ndarray, np.ndarray]:
    """Orientations and origins of every particle.

    Returns
    -------
    rotations : np.ndarray
        RELION rotation matrices, float64, shape (n, 3, 3).
    origins_px : np.ndarray
        (x, y) origins in px (rlnOriginX/YAngst / pixel size; 0 when absent), shape (n, 2).
    """
    pset.require(POSE_LABELS, "reconstruction from known poses")
    p = pset.particles
    angles = [pd.to_numeric(p[lab], errors="coerce").to_numpy(np.float64) for lab in POSE_LABELS]
    if not all(np.isfinite(a).all() for a in angles):
        raise InputError(pset.source, "rlnAngleRot/Tilt/Psi hold non-numeric or infinite values")
    rotations = euler_to_matrix(*angles)
    ps = pset.pixel_size
    origins = np.zeros((len(p), 2))
    for j, lab in enumerate(("rlnOriginXAngst", "rlnOriginYAngst")):
        if lab in p:
            origins[:, j] = pd.to_numeric(p[lab], errors="coerce").to_numpy(np.float64) / ps
    if not np.isfinite(origins).all():
        raise InputError(pset.source, "rlnOriginX/YAngst hold non-numeric or infinite values")
    return rotations, origins


def half_sets(pset: ParticleSet) -> np.ndarray:
    """Gold-standard half set (1 or 2) of every particle from rlnRandomSubset, int64, shape (n,)."""
    pset.require(("rlnRandomSubset",), "half-set reconstruction")
    subset = pd.to_numeric(pset.particles["rlnRandomSubset"], errors="coerce").to_numpy()
    if not np.isin(subset, (1, 2)).all():
        bad = subset[~np.isin(subset, (1, 2))][0]
        raise InputError(pset.source, f"rlnRandomSubset must be 1 or 2 (found {bad})")
    if not ((subset == 1).any() and (subset == 2).any()):
        raise InputError(pset.source, "rlnRandomSubset puts every particle in the same half set")
    return subset.astype(np.int64)


def assign_half_sets(n: int, seed: int) -> np.ndarray:
    """Balanced random half sets (1 or 2) for ``n`` particles, reproducible from ``seed``, shape (n,)."""
    order = np.random.default_rng([int(seed), 2]).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) % 2 + 1
    return out


def particle_ctfs(pset: ParticleSet, rows: np.ndarray, box: int, pixel_size: float, device=None,
                  ctf: bool = True) -> torch.Tensor:
    """CTF of each selected particle on its rfft half plane, float32, shape (m, box, box // 2 + 1).

    Parameters
    ----------
    rows : np.ndarray
        Particle positions, int, shape (m,).
    box : int
        Box in px of the images the CTF applies to.
    pixel_size : float
        Å/px of those images.
    ctf : bool
        False returns ones (particles without CTF, e.g. phase-flipped or simulated clean).
    """
    rows = np.asarray(rows)
    if not ctf:
        return torch.ones((len(rows), box, box // 2 + 1), dtype=torch.float32, device=device)
    pset.require(CTF_LABELS + CTF_OPTICS_LABELS, "CTF correction (pass ctf=False to reconstruct without)")
    p = pset.particles.iloc[rows]
    optics = pset.optics.set_index("rlnOpticsGroup")
    out = torch.empty((len(rows), box, box // 2 + 1), dtype=torch.float32, device=device)

    def col(label, default):
        return pd.to_numeric(p[label], errors="coerce").to_numpy(np.float64) if label in p else np.full(len(p), default)

    du, dv, ang = col("rlnDefocusU", 0.0), col("rlnDefocusV", 0.0), col("rlnDefocusAngle", 0.0)
    phase, bfac, scale = col("rlnPhaseShift", 0.0), col("rlnCtfBFactor", 0.0), col("rlnCtfScalefactor", 1.0)
    if not all(np.isfinite(a).all() for a in (du, dv, ang, phase, bfac, scale)):
        raise InputError(pset.source, "CTF parameters hold non-numeric or infinite values")
    groups = p["rlnOpticsGroup"].to_numpy()
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        o = optics.loc[g]
        out[torch.as_tensor(sel, device=device)] = ctf_2d(
            box, pixel_size, du[sel], dv[sel], ang[sel], float(o["rlnVoltage"]), float(o["rlnSphericalAberration"]),
            float(o["rlnAmplitudeContrast"]), phase_shift=phase[sel], bfactor=bfac[sel], scale=scale[sel],
            half=True, device=device)
    return out


def image_transforms(images, device=None) -> torch.Tensor:
    """rfft half planes of real images centred at px box // 2, complex64, shape (m, box, box // 2 + 1)."""
    if isinstance(images, torch.Tensor):  # may already sit on the GPU: np.asarray would fail there
        x = images.to(device=device, dtype=torch.float32)
    else:
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32, device=device)
    return torch.fft.rfft2(torch.fft.ifftshift(x, dim=(-2, -1)))


def half_plane_frequencies(box: int, max_radius: float, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rfft half-plane coefficients within a radius.

    Returns
    -------
    index : torch.Tensor
        Flat positions in the (box, box // 2 + 1) half plane, int64, shape (K,).
    freqs : torch.Tensor
        (kx, ky) in Fourier px, float32, shape (K, 2).
    multiplicity : torch.Tensor
        0.5 on the kx = 0 column (its Friedel mates are in the half plane too), 1 elsewhere,
        float32, shape (K,).
    """
    ky = torch.fft.fftfreq(box, d=1.0 / box, device=device)
    kx = torch.fft.rfftfreq(box, d=1.0 / box, device=device)
    gy, gx = torch.meshgrid(ky, kx, indexing="ij")
    keep = (gx**2 + gy**2 <= max_radius**2).reshape(-1)
    index = torch.nonzero(keep).reshape(-1)
    freqs = torch.stack([gx.reshape(-1)[index], gy.reshape(-1)[index]], dim=1).to(torch.float32)
    multiplicity = torch.where(freqs[:, 0] == 0, 0.5, 1.0).to(torch.float32)
    return index, freqs, multiplicity


def undo_origin(values: torch.Tensor, freqs: torch.Tensor, origins_px: torch.Tensor, box: int) -> torch.Tensor:
    """Re-centre particle transforms on the map's rotation centre.

    RELION places a particle with origin o at -o from the box centre (the projection is
    shifted by -rlnOriginX/Y, as in RELION's particle subtraction), so re-centring
    shifts the image by +o: X(k) exp(-2 pi i k.o / box).

    Parameters
    ----------
    values : torch.Tensor
        Coefficients, complex64, shape (m, K).
    freqs : torch.Tensor
        (kx, ky) Fourier px, shape (K, 2).
    origins_px : torch.Tensor
        (x, y) origins (rlnOriginX/YAngst / pixel size) in px, shape (m, 2).
    box : int
        Image side in px.
    """
    o = origins_px.to(values.device, torch.float32)
    phase = -2.0 * torch.pi / box * (o[:, 0:1] * freqs[None, :, 0] + o[:, 1:2] * freqs[None, :, 1])
    return values * torch.polar(torch.ones_like(phase), phase)
