"""Contrast transfer function in the RELION convention.

CTF(k) = -sin(gamma(k)) * exp(-B k^2 / 4) * scale, with
gamma = -pi lambda df(theta) k^2 + pi/2 Cs lambda^3 k^4 - phase_shift - atan(Q0 / sqrt(1 - Q0^2)),
so CTF(0) = +Q0 (protein white). df(theta) = (dU + dV)/2 + (dU - dV)/2 cos(2 (theta - angle)),
positive defocus is underfocus.
"""

from __future__ import annotations

import math

import torch

from cryosift.fourier import frequency_grid


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2643247 / math.sqrt(v * (1.0 + v * 0.978466e-6))


def ctf_2d(box: int, pixel_size: float, defocus_u, defocus_v, defocus_angle, voltage: float,
           spherical_aberration: float, amplitude_contrast: float, phase_shift=0.0, bfactor=0.0,
           scale=1.0, half: bool = False, device=None, dtype=torch.float32) -> torch.Tensor:
    """CTF images for a batch of particles, in FFT layout (zero frequency at [0, 0]).

    Parameters
    ----------
    box : int
        Image side in px.
    pixel_size : float
        Å/px.
    defocus_u, defocus_v : float or array_like
        Defocus in Å, shape (n,) or scalar.
    defocus_angle : float or array_like
        Astigmatism angle in degrees.
    voltage : float
        kV.
    spherical_aberration : float
        Cs in mm.
    amplitude_contrast : float
        Q0, fraction (e.g. 0.1).
    phase_shift : float or array_like
        Degrees.
    bfactor : float or array_like
        Å^2; envelope exp(-B k^2 / 4).
    scale : float or array_like
        Multiplier.
    half : bool
        Return the rfft half plane (box, box // 2 + 1) instead of the full plane.

    Returns
    -------
    torch.Tensor
        Shape (n, box, box) or (n, box, box // 2 + 1).
    """
    def col(x):
        t = torch.as_tensor(x, dtype=torch.float64, device=device).reshape(-1)
        return t[:, None, None]

    ky, kx = frequency_grid(box, pixel_size, half=half, device=device, dtype=torch.float64)
    k2 = kx**2 + ky**2
    theta = torch.atan2(ky, kx)
    lam = electron_wavelength(voltage)
    cs = spherical_aberration * 1e7
    du, dv, ang = col(defocus_u), col(defocus_v), torch.deg2rad(col(defocus_angle))
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2.0 * (theta - ang))
    q0 = amplitude_contrast
    gamma = (-math.pi * lam * df * k2 + 0.5 * math.pi * cs * lam**3 * k2**2
             - torch.deg2rad(col(phase_shift)) - math.atan(q0 / math.sqrt(1.0 - q0 * q0)))
    out = -torch.sin(gamma) * col(scale)
    b = col(bfactor)
    if torch.any(b != 0):
        out = out * torch.exp(-b * k2 / 4.0)
    return out.to(dtype)
