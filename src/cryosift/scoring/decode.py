"""From network output to the CryoSift score (1.0 best ... 5.0 unusable), and back.

Published convention: the training target of grade g (A=1 ... F=5) was
``t = 0.2 (5 - g) + 0.2 w`` with ``w = (min_job(res) / res)^2``, so the score of a class is
``5 - 5 t + w``: it depends on the best resolution among the other classes of the job.

Our convention (``grade``): ``t = 0.2 (5 - g)`` and score ``5 - 5 t``; a class's score does not
depend on the rest of the job.

Scores are never clamped: the network was trained with a squared-error loss, so a class
better than any training example may score below 1 and a worse one above 5.
"""

from __future__ import annotations

import numpy as np

from cryosift.io.models import NO_RESOLUTION
from cryosift.scoring.features import filled_resolution

DECODE_CONVENTIONS = ("published", "grade")


def resolution_weight(resolution, fill: float = NO_RESOLUTION) -> np.ndarray:
    """``(min(res) / res)^2`` over one job's classes; 0 where undefined.

    Parameters
    ----------
    resolution : array_like
        Estimated resolution per class in Å, shape (k,); non-finite values count as ``fill``.
    """
    res = filled_resolution(resolution, fill)
    ok = res > 0
    if not ok.any():
        return np.zeros_like(res)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (res[ok].min() / res) ** 2
    return np.where(ok & np.isfinite(w), w, 0.0)


def decode(prediction, convention: str, resolution=None, fill: float = NO_RESOLUTION) -> np.ndarray:
    """CryoSift scores from raw network outputs.

    Parameters
    ----------
    prediction : array_like
        Network outputs, shape (k,).
    convention : {"published", "grade"}
        The model's decode convention.
    resolution : array_like, optional
        Estimated resolution per class in Å, shape (k,); required for ``published``.

    Returns
    -------
    np.ndarray
        float64 scores, shape (k,), unclamped.
    """
    p = np.asarray(prediction, dtype=np.float64)
    if convention == "published":
        if resolution is None:
            raise ValueError("the published decode needs each class's resolution")
        return 5.0 - 5.0 * p + resolution_weight(resolution, fill)
    if convention == "grade":
        return 5.0 - 5.0 * p
    raise ValueError(f"unknown decode convention {convention!r} (one of {', '.join(DECODE_CONVENTIONS)})")


def encode(grade, convention: str, resolution=None, fill: float = NO_RESOLUTION) -> np.ndarray:
    """Training targets for grades 1 (best) ... 5 (unusable): the inverse of :func:`decode`."""
    g = np.asarray(grade, dtype=np.float64)
    if convention == "published":
        if resolution is None:
            raise ValueError("the published target needs each class's resolution")
        return 0.2 * (5.0 - g) + 0.2 * resolution_weight(resolution, fill)
    if convention == "grade":
        return 0.2 * (5.0 - g)
    raise ValueError(f"unknown decode convention {convention!r} (one of {', '.join(DECODE_CONVENTIONS)})")


def class_score(score) -> np.ndarray:
    """RELION-convention class score (0 worst ... 1 best) from CryoSift scores.

    A linear map, 1.0 -> 1 and 5.0 -> 0 (3.0 -> 0.5, the Class Ranker's default threshold),
    clipped to [0, 1]; the raw CryoSift score is kept separately.
    """
    s = np.asarray(score, dtype=np.float64)
    return np.clip((5.0 - s) / 4.0, 0.0, 1.0)
