"""Fourier shell correlation between two maps and the resolution where it crosses a threshold.

Shells follow RELION and EMAN: a Fourier voxel k belongs to shell round(|k|) (in units of
1/(box x pixel size)), and shell i lies at resolution box x pixel size / i. The crossing is
the first shell (from low resolution) below the threshold, linearly interpolated in spatial
frequency between that shell and the one before it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.fft

from cryosift.fourier import shell_index

#: Half maps against each other (Rosenthal & Henderson 2003).
HALF_MAP_THRESHOLD = 0.143
#: A map against a noise-free reference such as a model map (equivalent to 0.143 for half maps).
MODEL_THRESHOLD = 0.5


def _as_array(volume) -> np.ndarray:
    if hasattr(volume, "detach"):  # torch tensor on any device
        volume = volume.detach().cpu().numpy()
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"expected a cubic 3D map, got shape {vol.shape}")
    return vol


def shell_table(box: int, pixel_size: float) -> pd.DataFrame:
    """Shell numbers 0 .. box // 2 with their spatial frequency (1/Å) and resolution (Å)."""
    shells = np.arange(box // 2 + 1)
    freq = shells / (box * pixel_size)
    with np.errstate(divide="ignore"):
        res = np.where(shells > 0, box * pixel_size / np.maximum(shells, 1), np.inf)
    return pd.DataFrame({"shell": shells, "frequency": freq, "resolution_A": res})


def fsc_from_transforms(ft1: np.ndarray, ft2: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """FSC per shell from two half-plane transforms (as from ``rfftn``).

    Returns
    -------
    fsc : np.ndarray
        float64, shape (box // 2 + 1,); 0 where a shell has no power.
    count : np.ndarray
        Fourier voxels per shell, int64, same shape.
    """
    idx = shell_index(box).ravel()
    n_shells = box // 2 + 1
    keep = idx < n_shells
    idx = idx[keep]
    a, b = ft1.ravel()[keep], ft2.ravel()[keep]
    cross = np.bincount(idx, weights=(a * b.conj()).real, minlength=n_shells)
    p1 = np.bincount(idx, weights=(a * a.conj()).real, minlength=n_shells)
    p2 = np.bincount(idx, weights=(b * b.conj()).real, minlength=n_shells)
    count = np.bincount(idx, minlength=n_shells)
    denom = np.sqrt(p1 * p2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = np.where(denom > 0, cross / denom, 0.0)
    return fsc, count


def fsc_curve(map1, map2, pixel_size: float, mask=None) -> pd.DataFrame:
    """Fourier shell correlation between two maps on the same grid.

    Parameters
    ----------
    map1, map2 : np.ndarray or torch.Tensor
        Maps, shape (box, box, box), indexed [z, y, x].
    pixel_size : float
        Voxel size in Å.
    mask : np.ndarray, optional
        Real-space weights in [0, 1], shape (box, box, box), applied to both maps (e.g.
        :func:`cryosift.validate.masks.soft_sphere_mask`); none by default.

    Returns
    -------
    pd.DataFrame
        One row per shell 0 .. box // 2: ``shell``, ``frequency`` (1/Å), ``resolution_A``
        (Å, inf for shell 0), ``fsc`` and ``n_coefficients`` (Fourier voxels in the shell).
    """
    v1, v2 = _as_array(map1), _as_array(map2)
    if v1.shape != v2.shape:
        raise ValueError(f"maps differ in shape: {v1.shape} and {v2.shape}")
    if mask is not None:
        m = _as_array(mask)
        v1, v2 = v1 * m, v2 * m
    box = v1.shape[0]
    fsc, count = fsc_from_transforms(scipy.fft.rfftn(v1, workers=-1), scipy.fft.rfftn(v2, workers=-1), box)
    table = shell_table(box, pixel_size)
    table["fsc"] = fsc
    table["n_coefficients"] = count
    return table


def resolution_at(curve: pd.DataFrame, threshold: float) -> float:
    """Resolution in Å where an FSC curve first falls below ``threshold``.

    The crossing is interpolated linearly in spatial frequency between the last shell at
    or above the threshold and the first shell below it (shell 0 is ignored).

    Parameters
    ----------
    curve : pd.DataFrame
        As from :func:`fsc_curve` (needs ``frequency`` and ``fsc``).
    threshold : float
        0.143 for half maps, 0.5 for a map against a model map.

    Returns
    -------
    float
        Resolution in Å. ``inf`` when the first shell is already below the threshold (no
        resolution can be claimed); the Nyquist resolution (2 x pixel size) when the curve
        never falls below it (a bound, not a measurement).
    """
    freq = np.asarray(curve["frequency"], dtype=np.float64)[1:]
    fsc = np.asarray(curve["fsc"], dtype=np.float64)[1:]
    below = np.flatnonzero(fsc < threshold)
    if below.size == 0:
        return float(1.0 / freq[-1])
    i = int(below[0])
    if i == 0:
        return math.inf
    f0, f1, c0, c1 = freq[i - 1], freq[i], fsc[i - 1], fsc[i]
    f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(1.0 / f)


def randomize_phases(volume: np.ndarray, from_shell: int, seed: int = 0) -> np.ndarray:
    """Copy of a map with Fourier phases made random from ``from_shell`` outwards.

    Amplitudes are kept; phases of every shell >= ``from_shell`` are drawn uniformly from a
    generator seeded with ``seed`` (the result stays real).

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box).
    from_shell : int
        First shell (round(|k|) in 1/box units) whose phases are randomised.
    seed : int
        Random seed.

    Returns
    -------
    np.ndarray
        float64, same shape.
    """
    vol = _as_array(volume)
    box = vol.shape[0]
    ft = scipy.fft.rfftn(vol, workers=-1)
    sel = shell_index(box) >= from_shell
    phase = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, int(sel.sum()))
    ft[sel] = np.abs(ft[sel]) * np.exp(1j * phase)
    return scipy.fft.irfftn(ft, s=vol.shape, workers=-1)


def corrected_fsc(map1, map2, pixel_size: float, mask, randomize_at: float = 0.8, seed: int = 0) -> pd.DataFrame:
    """Masked half-map FSC corrected for the mask's own correlation (Chen et al. 2013).

    Phases of both maps are randomised beyond the first shell where the unmasked FSC drops
    below ``randomize_at``; the masked FSC of those maps measures what the mask alone adds,
    and FSC_true = (FSC_masked - FSC_random) / (1 - FSC_random) from two shells further on.

    Parameters
    ----------
    map1, map2 : np.ndarray
        Half maps, shape (box, box, box).
    pixel_size : float
        Voxel size in Å.
    mask : np.ndarray
        Soft mask in [0, 1], shape (box, box, box).
    randomize_at : float
        Unmasked FSC below which phases are randomised (RELION uses 0.8).
    seed : int
        Seed of the phase randomisation.

    Returns
    -------
    pd.DataFrame
        As :func:`fsc_curve`, with columns ``fsc`` (corrected), ``fsc_unmasked``,
        ``fsc_masked`` and ``fsc_random_masked``.
    """
    v1, v2 = _as_array(map1), _as_array(map2)
    unmasked = fsc_curve(v1, v2, pixel_size)
    masked = fsc_curve(v1, v2, pixel_size, mask)
    below = np.flatnonzero((unmasked["fsc"].to_numpy()[1:] < randomize_at)) + 1
    start = int(below[0]) if below.size else len(unmasked)
    table = masked.copy()
    table["fsc_unmasked"] = unmasked["fsc"]
    table["fsc_masked"] = masked["fsc"]
    if start >= len(unmasked) - 1:
        table["fsc_random_masked"] = 0.0
        return table
    r1 = randomize_phases(v1, start, seed)
    r2 = randomize_phases(v2, start, seed + 1)
    rand = fsc_curve(r1, r2, pixel_size, mask)["fsc"].to_numpy()
    fm = masked["fsc"].to_numpy()
    shells = table["shell"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(shells >= start + 2, (fm - rand) / np.where(rand < 1.0, 1.0 - rand, np.nan), fm)
    table["fsc"] = np.nan_to_num(corr, nan=0.0)
    table["fsc_random_masked"] = rand
    return table
