"""Helpers shared by the validation tests (and the validation benchmark): maps with a known transform."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from cryosift.density import model_coordinates, model_map
from cryosift.simulate import build_pseudoprotein
from cryosift.validate import with_coordinates


def gaussian_lowpass(volume: np.ndarray, pixel_size: float, resolution_A: float) -> np.ndarray:
    """Multiply a map's transform by exp(-k^2 d^2) (1/e at 1/d), as molmap's resolution."""
    box = volume.shape[0]
    k = np.fft.fftfreq(box, d=pixel_size)
    kx = np.fft.rfftfreq(box, d=pixel_size)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2
    ft = np.fft.rfftn(volume) * np.exp(-k2 * resolution_A**2)
    return np.fft.irfftn(ft, s=volume.shape, axes=(0, 1, 2)).astype(np.float32)


def transformed_pair(mass_kda, box, pixel_size, seed=0, flipped=False, noise=0.0, resolution=None, shift_sd_A=5.0):
    """A centred model map and a 'reconstruction' of the same model moved by a known transform.

    The reconstruction M' (mirrored back when ``flipped``) satisfies reference(x) = M'(R^T (x - t))
    in centred coordinates, the convention of :class:`cryosift.validate.MapAlignment`.

    Returns
    -------
    dict
        ``structure`` (model, centred on the origin of centred coordinates), ``reference``,
        ``moving`` (maps, float32), ``origin`` (both maps' header origin, Å), ``rotation``,
        ``shift_A``, ``flipped``.
    """
    st = build_pseudoprotein(mass_kda, seed=seed).structure
    centre = (box // 2) * pixel_size
    origin = -np.full(3, centre)  # model centre (0, 0, 0) at voxel box // 2
    reference = model_map(st, box, pixel_size, origin_A=tuple(origin))
    rng = np.random.default_rng(seed)
    rotation = Rotation.random(random_state=seed).as_matrix()
    shift = rng.normal(scale=shift_sd_A, size=3)
    y = (model_coordinates(st) - shift) @ rotation  # R^T (x - t)
    if flipped:
        y[:, 2] *= -1.0
    moving = model_map(with_coordinates(st, y), box, pixel_size, resolution=resolution, origin_A=tuple(origin))
    if noise:
        moving = moving + rng.normal(scale=noise * moving.std(), size=moving.shape).astype(np.float32)
    return {"structure": st, "reference": reference, "moving": moving, "origin": origin,
            "rotation": rotation, "shift_A": shift, "flipped": flipped}
