"""Class averages rendered as RELION stores them, for training data that looks like real jobs.

RELION 2D classification (``relion_refine`` with ``--flatten_solvent``) masks every class
reference after the M-step with a spherical soft mask at the particle diameter: pixels
within the radius are kept, a raised cosine of ``--maskedge`` pixels (default 5) blends into
the background, and everything beyond is set to the average of the region outside the
radius (RELION's ``softMaskOutsideMap``). It does not rescale the averages: their values
are those of the CTF-corrected (Wiener) average of particles normalised to background mean
0 and standard deviation 1 (``relion_preprocess --norm``). The builtin engine already
averages that way (background-normalised particles, Wiener CTF correction), so
:func:`relion_render` changes only the mask: RELION's radius (no clamping to the box), its
5 px edge and its flat background, where the builtin engine tapers to zero over
0.06 box px inside a radius kept within the box.
"""

from __future__ import annotations

import numpy as np

from cryosift.masks import soft_disc

#: RELION's default width of the soft edge of the particle mask (``--maskedge``), px.
RELION_MASK_EDGE_PX = 5.0


def relion_mask_weights(box: int, radius_px: float, edge_px: float = RELION_MASK_EDGE_PX) -> np.ndarray:
    """Background weight of RELION's soft circular mask: 0 within the radius, 1 beyond radius + edge.

    Returns
    -------
    np.ndarray
        float64, shape (box, box), centred on pixel box // 2; a raised cosine in between.
    """
    return soft_disc(box, 2, radius_px, edge_px, rising=True)


def relion_render(images: np.ndarray, pixel_size: float, mask_diameter_A: float,
                  edge_px: float = RELION_MASK_EDGE_PX) -> np.ndarray:
    """Mask class averages as RELION does before storing them.

    Parameters
    ----------
    images : np.ndarray
        Class averages, shape (K, box, box), values as the engine wrote them.
    pixel_size : float
        Å/px of the averages.
    mask_diameter_A : float
        The classification's particle (mask) diameter, Å.
    edge_px : float
        Width of the raised-cosine edge, px (RELION's ``--maskedge``).

    Returns
    -------
    np.ndarray
        float32, shape (K, box, box): unchanged within the radius, flat beyond radius + edge at
        each image's background average (the cosine-weighted mean of its pixels outside the radius).
    """
    stack = np.asarray(images, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ValueError(f"class averages must be a (K, box, box) stack, not shape {stack.shape}")
    w = relion_mask_weights(stack.shape[-1], mask_diameter_A / 2.0 / pixel_size, edge_px)
    total = w.sum()
    background = (stack * w).sum(axis=(1, 2)) / total if total > 0 else np.zeros(len(stack))
    out = stack * (1.0 - w) + background[:, None, None] * w
    return out.astype(np.float32)
