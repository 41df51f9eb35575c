"""Soft masks with a raised-cosine edge, as RELION's: classification, ab initio, FSC and training renders.

A soft mask is 1 up to a radius (or an envelope), falls as 0.5 + 0.5 cos(pi d / edge) over
``edge`` and is 0 beyond. One edge function serves numpy arrays (computed in float64) and
torch tensors (computed in the tensor's dtype, on its device).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def raised_cosine(distance, edge: float, rising: bool = False):
    """Weight of a soft edge at ``distance`` past where the edge starts.

    Parameters
    ----------
    distance : np.ndarray or torch.Tensor
        Distance past the start of the edge (px, voxels or Å; negative inside), any shape.
    edge : float
        Width of the edge, same unit as ``distance``; <= 0 gives a hard edge.
    rising : bool
        Return the complement, 0 inside and 1 beyond the edge (a background weight).

    Returns
    -------
    np.ndarray or torch.Tensor
        Same shape as ``distance``: numpy float64 (a hard edge: float32), torch in the tensor's dtype.
    """
    if isinstance(distance, torch.Tensor):
        if edge <= 0:
            inside = distance <= 0
            return (~inside if rising else inside).to(distance.dtype)
        t = (distance / edge).clamp(0.0, 1.0)
        cosine = torch.cos(math.pi * t)
    else:
        if edge <= 0:
            return ((distance > 0) if rising else (distance <= 0)).astype(np.float32)
        t = np.clip(distance / edge, 0.0, 1.0)
        cosine = np.cos(np.pi * t)
    return 0.5 - 0.5 * cosine if rising else 0.5 + 0.5 * cosine


def centred_radius(box: int, ndim: int, tensor: bool = False, device=None):
    """Distance of every pixel (``ndim`` 2) or voxel (3) from pixel box // 2 on each axis.

    Returns
    -------
    np.ndarray or torch.Tensor
        Shape (box,) * ndim: numpy float64, or with ``tensor`` torch float32 on ``device``.
    """
    if ndim not in (2, 3):
        raise ValueError(f"a mask is 2D or 3D, not {ndim}D")
    if tensor:
        c = torch.arange(box, device=device, dtype=torch.float32) - box // 2
        if ndim == 2:
            return torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
        return torch.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    c = np.arange(box, dtype=np.float64) - box // 2
    if ndim == 2:
        return np.hypot(c[:, None], c[None, :])
    return np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)


def soft_disc(box: int, ndim: int, radius_px: float, edge_px: float, rising: bool = False, tensor: bool = False,
              device=None):
    """A circle (``ndim`` 2) or sphere (3) about pixel box // 2 with a raised-cosine edge.

    Parameters
    ----------
    box : int
        Side in px.
    radius_px, edge_px : float
        Where the edge starts and its width, px.
    rising, tensor, device
        As :func:`raised_cosine` and :func:`centred_radius`.

    Returns
    -------
    np.ndarray or torch.Tensor
        Shape (box,) * ndim, values in [0, 1].
    """
    return raised_cosine(centred_radius(box, ndim, tensor, device) - radius_px, edge_px, rising)
