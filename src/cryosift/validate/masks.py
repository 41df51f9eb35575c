"""Soft real-space masks for FSC: a sphere about the box centre, or the model's envelope."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryosift.masks import raised_cosine, soft_disc


def soft_sphere_mask(box: int, radius_px: float | None = None, edge_px: float | None = None) -> np.ndarray:
    """A sphere about voxel box // 2 with a raised-cosine edge (as RELION's soft masks).

    Parameters
    ----------
    box : int
        Map side in voxels.
    radius_px : float, optional
        Radius where the edge starts, in voxels (default 0.425 x box, so that with the
        default edge the mask reaches 0 at the box edge like cryoSPARC's spherical mask).
    edge_px : float, optional
        Width of the cosine edge in voxels (default 0.075 x box).

    Returns
    -------
    np.ndarray
        float32, shape (box, box, box), values in [0, 1], indexed [z, y, x].
    """
    radius = 0.425 * box if radius_px is None else float(radius_px)
    edge = 0.075 * box if edge_px is None else float(edge_px)
    return soft_disc(box, 3, radius, edge).astype(np.float32)


def threshold_mask(volume: np.ndarray, pixel_size: float, threshold: float, dilate_A: float = 3.0,
                   edge_A: float = 6.0) -> np.ndarray:
    """A soft mask around the voxels of a map above a threshold.

    Voxels above ``threshold`` are taken, grown by ``dilate_A`` and given a raised-cosine
    edge of ``edge_A`` (distances measured exactly with a Euclidean distance transform).

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (box, box, box).
    pixel_size : float
        Voxel size in Å.
    threshold : float
        Density value that defines the envelope.
    dilate_A, edge_A : float
        Growth of the envelope and width of the soft edge, in Å.

    Returns
    -------
    np.ndarray
        float32, same shape, values in [0, 1].
    """
    inside = np.asarray(volume) > threshold
    if not inside.any():
        return np.ones(np.shape(volume), dtype=np.float32)
    distance = ndimage.distance_transform_edt(~inside) * pixel_size
    return raised_cosine(distance - dilate_A, edge_A).astype(np.float32)


def model_mask(model_map: np.ndarray, pixel_size: float, dilate_A: float = 3.0, edge_A: float = 6.0,
               fraction: float = 0.05) -> np.ndarray:
    """A soft mask around a model, from its simulated map.

    The envelope is where the model map exceeds ``fraction`` of its maximum; it is grown
    and softened as in :func:`threshold_mask`.

    Parameters
    ----------
    model_map : np.ndarray
        Model map on the grid to mask, shape (box, box, box).
    pixel_size : float
        Voxel size in Å.
    dilate_A, edge_A : float
        Growth of the envelope and width of the soft edge, in Å.
    fraction : float
        Threshold as a fraction of the model map's maximum.

    Returns
    -------
    np.ndarray
        float32, same shape, values in [0, 1].
    """
    m = np.asarray(model_map, dtype=np.float64)
    return threshold_mask(m, pixel_size, fraction * float(m.max()), dilate_A, edge_A)
