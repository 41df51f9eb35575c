"""CryoSift's mass estimate of a class average, and the per-job mass deviations.

The background level and noise come from a ring of pixels 3 px inside the border (the
rows and columns at index 3 and -3, corners counted twice, as published). Pixels brighter
than mean + 3 SD of that ring are the particle; the mean of all other pixels is the
background, which is subtracted before the particle pixels are summed. The sum times the
pixel area (Å^2) times an empirical factor (26.455, calibrated against EMDB entries of
known mass) estimates the mass in kDa. Raw stored values are used, so the estimate is
only comparable between classes of one job (which is how the network uses it).
"""

from __future__ import annotations

import numpy as np

#: Empirical calibration from summed density (x Å^2) to kDa.
MASS_CALIBRATION = 26.455
#: Distance of the background ring from the border, px.
EDGE_INSET = 3
#: Particle pixels lie this many ring SDs above the ring mean.
N_SIGMA = 3.0
_CHUNK = 64


def edge_statistics(images: np.ndarray, inset: int = EDGE_INSET) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD (ddof 0) of the ring ``inset`` px inside the border of each image.

    Parameters
    ----------
    images : np.ndarray
        Shape (k, box, box), box > 2 * inset.

    Returns
    -------
    mean, sd : np.ndarray
        float64, shape (k,).
    """
    x = np.asarray(images, dtype=np.float64)
    c = inset
    if x.shape[-1] <= 2 * c or x.shape[-2] <= 2 * c:
        raise ValueError(f"images of {x.shape[-1]} px are too small for a background ring {c} px inside the border")
    ring = np.concatenate([x[:, c:-c, c], x[:, c:-c, -c], x[:, c, c:-c], x[:, -c, c:-c]], axis=1)
    return ring.mean(axis=1), ring.std(axis=1)


def estimate_mass(images: np.ndarray, pixel_size: float, calibration: float = MASS_CALIBRATION) -> np.ndarray:
    """Estimated mass of the particle in each class average.

    Parameters
    ----------
    images : np.ndarray
        Class averages as stored (raw values), shape (k, box, box).
    pixel_size : float
        Å/px.
    calibration : float
        kDa per (density x Å^2); the published value by default.

    Returns
    -------
    np.ndarray
        Mass estimate in kDa, float64, shape (k,).
    """
    images = np.asarray(images)
    signal = np.empty(len(images), dtype=np.float64)
    for start in range(0, len(images), _CHUNK):  # bounded temporaries for any number of classes
        x = np.asarray(images[start:start + _CHUNK], dtype=np.float64)
        mean, sd = edge_statistics(x)
        particle = x > (mean + N_SIGMA * sd)[:, None, None]
        n_bg = (~particle).sum(axis=(1, 2))
        bg_sum = np.where(particle, 0.0, x).sum(axis=(1, 2))
        background = np.divide(bg_sum, n_bg, out=np.zeros_like(bg_sum), where=n_bg > 0)
        signal[start:start + _CHUNK] = np.where(particle, x - background[:, None, None], 0.0).sum(axis=(1, 2))
    return signal * pixel_size**2 * calibration


def mass_mode(masses: np.ndarray) -> float:
    """Most frequent value of the raw floats, the smallest among ties (so usually the minimum)."""
    values, counts = np.unique(np.asarray(masses, dtype=np.float64), return_counts=True)
    return float(values[np.argmax(counts)])


def mass_deviations(masses: np.ndarray) -> dict[str, np.ndarray]:
    """|m - mean(m)|, |m - median(m)| and |m - mode(m)| over the classes of one job.

    Parameters
    ----------
    masses : np.ndarray
        Mass per class in kDa, shape (k,).

    Returns
    -------
    dict
        ``dmean``, ``dmedian``, ``dmode``: float64 arrays of shape (k,), kDa.
    """
    m = np.asarray(masses, dtype=np.float64)
    if m.size == 0:
        empty = np.zeros(0)
        return {"dmean": empty, "dmedian": empty, "dmode": empty}
    return {
        "dmean": np.abs(m - m.mean()),
        "dmedian": np.abs(m - np.median(m)),
        "dmode": np.abs(m - mass_mode(m)),
    }
