"""Score class averages: features, batched preprocessing and network, decode.

Class averages masked as RELION and cryoSPARC store them have the step between the solvent
and the flat outside removed first (:mod:`cryosift.scoring.solvent`), for our models only.
A model with ``views=8`` scores the mean network output over the eight 90-degree rotations
and mirrors of each class average (:class:`~cryosift.scoring.checkpoint.ModelConfig`).
Inference runs under :func:`torch.inference_mode` in batches of ``batch_size`` classes, so
memory stays bounded for any number of classes; on CUDA it uses deterministic cuDNN
kernels so reruns give identical scores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np
import pandas as pd
import torch

from cryosift.errors import InputError
from cryosift.io.models import ClassAverages
from cryosift.scoring.checkpoint import ScoringModel
from cryosift.scoring.decode import class_score, decode
from cryosift.scoring.empty import apply_empty_rule, empty_classes
from cryosift.scoring.features import class_features, feature_matrix
from cryosift.scoring.preprocess import dihedral_view, preprocess
from cryosift.scoring.solvent import level_solvent

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


@contextlib.contextmanager
def _deterministic_cudnn(device: torch.device):
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


def mean_output(network: torch.nn.Module, x: torch.Tensor, features: torch.Tensor, views: int = 1) -> torch.Tensor:
    """Network output averaged over the first ``views`` dihedral views of the input.

    Parameters
    ----------
    network : torch.nn.Module
        In eval mode.
    x : torch.Tensor
        Preprocessed class averages, shape (k, 1, n, n).
    features : torch.Tensor
        Scaled features, shape (k, 6).
    views : int
        1 (the input as given) or 8.

    Returns
    -------
    torch.Tensor
        Shape (k,), float64.
    """
    total = None
    for v in range(views):
        xv = dihedral_view(x, v)
        if x.is_contiguous(memory_format=torch.channels_last):
            xv = xv.contiguous(memory_format=torch.channels_last)
        y = network(xv, features)[:, 0].double()
        total = y if total is None else total + y
    return total / views


def predict(model: ScoringModel, images: np.ndarray, pixel_size: float, features: np.ndarray,
            batch_size: int = DEFAULT_BATCH_SIZE, device=None) -> np.ndarray:
    """Raw network outputs for class averages (averaged over the model's views).

    Parameters
    ----------
    model : ScoringModel
        Network and configuration.
    images : np.ndarray
        Class averages as stored, shape (k, box, box).
    pixel_size : float
        Å/px of ``images``.
    features : np.ndarray
        Network features, float32, shape (k, 6) (:func:`feature_matrix`).
    batch_size : int
        Classes per forward pass.
    device : str or torch.device, optional
        Default: where the model's weights are.

    Returns
    -------
    np.ndarray
        float64, shape (k,).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else model.device
    # Channels-last lets oneDNN/cuDNN skip layout reorders: faster and less memory.
    net = model.network.to(device=device, memory_format=torch.channels_last).eval()
    spec = model.config.preprocessing
    k = len(images)
    out = np.empty(k, dtype=np.float64)
    with torch.inference_mode(), _deterministic_cudnn(device):
        for start in range(0, k, batch_size):
            stop = min(start + batch_size, k)
            batch = torch.from_numpy(np.array(images[start:stop], dtype=np.float32)).to(device)
            x = preprocess(batch, pixel_size, spec).contiguous(memory_format=torch.channels_last)
            f = torch.from_numpy(np.ascontiguousarray(features[start:stop], dtype=np.float32)).to(device)
            out[start:stop] = mean_output(net, x, f, model.config.views).cpu().numpy()
    return out


def score_classes(classes: ClassAverages, model: ScoringModel, batch_size: int = DEFAULT_BATCH_SIZE,
                  device=None) -> pd.DataFrame:
    """Score every class average of one job.

    Parameters
    ----------
    classes : ClassAverages
        One job's class averages and per-class numbers.
    model : ScoringModel
        From :func:`cryosift.scoring.load_checkpoint`.
    batch_size : int
        Classes per forward pass (memory grows linearly with it).
    device : str or torch.device, optional
        Default: where the model's weights are.

    Returns
    -------
    pd.DataFrame
        One row per class, in input order: ``class``, ``score`` (1 best ... 5 unusable,
        unclamped, except that a class with no particles scores at least 5.0:
        :mod:`cryosift.scoring.empty`), ``class_score`` (0..1, higher better),
        ``network_output``, ``mass_kDa`` and the raw features (``resolution_A``,
        ``distribution``, ``pixel_size_A``, ``mass_dmean_kDa``, ``mass_dmedian_kDa``,
        ``mass_dmode_kDa``), ``particles``, ``empty_class`` (bool: no particles).

    Raises
    ------
    InputError
        No classes, non-finite pixels, or a class whose score comes out NaN.
    """
    if len(classes) == 0:
        raise InputError(classes.source, "no class averages to score")
    if model.config.preprocessing.level_solvent:
        images, levelled = level_solvent(classes.images)
        if levelled.any():
            classes = dataclasses.replace(classes, images=images)
            log.info("levelled the solvent step of %d of %d masked class averages before scoring "
                     "(cryosift.scoring.solvent)", int(levelled.sum()), len(images))
    table = class_features(classes)
    features = feature_matrix(table, model.config.features)
    raw = predict(model, classes.images, classes.pixel_size, features, batch_size=batch_size, device=device)
    score = decode(raw, model.config.decode, table["resolution_A"].to_numpy(), model.config.features.resolution_fill)
    bad = ~np.isfinite(score)
    if bad.any():
        numbers = ", ".join(str(int(c)) for c in table["class"].to_numpy()[bad][:10])
        raise InputError(classes.source, f"class {numbers}: the network's score is not a number "
                                         "(check the class averages and their features)")
    empty = empty_classes(table["distribution"].to_numpy(), table["particles"].to_numpy())
    score = apply_empty_rule(score, empty)
    table["empty_class"] = empty
    table.insert(1, "score", score)
    table.insert(2, "class_score", class_score(score))
    table.insert(3, "network_output", raw)
    table.attrs["model"] = model.config.describe()
    log.info("scored %d classes (%s); best %.3f, worst %.3f", len(table), model.config.describe(),
             score.min(), score.max())
    return table
