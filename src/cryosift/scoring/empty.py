"""A class with no particles is not a usable class: it scores no better than 5.0 (F).

An empty class (RELION: ``rlnClassDistribution`` 0; cryoSPARC or a feature table with counts:
no particle assigned) averages nothing, whatever its stored image shows (RELION keeps the last
reference of a class that lost its particles, which can look like a particle or like lattice
noise). The network judges the image and hardly the distribution feature, so on such images
the shipped model can score an empty class best of its job (benchmarks/README.md, "Real class
averages"). The rule, stated a priori: the score of an empty class is raised to 5.0 if the
network scored it better; ``network_output`` keeps what the network said and the column
``empty_class`` marks the class. Selection is unchanged by it (an empty class holds no particles),
but galleries, rankings, the attractor rule's count of good classes and the out-of-domain
check (:mod:`cryosift.scoring.domain`) no longer see an empty class as a good one.
"""

from __future__ import annotations

import numpy as np

#: Score given to a class with no particles (F: nothing to use), unless the network's is worse.
EMPTY_SCORE = 5.0


def empty_classes(distribution, particles=None) -> np.ndarray:
    """Classes with no particles.

    Parameters
    ----------
    distribution : array_like
        Fraction of the job's particles per class, shape (k,).
    particles : array_like of int, optional
        Particles per class, shape (k,); used only when any class has a count (tables
        without counts carry zeros everywhere).

    Returns
    -------
    np.ndarray
        bool, shape (k,).
    """
    d = np.asarray(distribution, dtype=np.float64)
    empty = np.isfinite(d) & (d <= 0)
    if particles is not None:
        n = np.asarray(particles, dtype=np.int64)
        if n.shape == d.shape and (n > 0).any():
            empty |= n <= 0
    return empty


def apply_empty_rule(scores, empty) -> np.ndarray:
    """Scores with every empty class raised to at least :data:`EMPTY_SCORE` (a new array)."""
    s = np.array(scores, dtype=np.float64)
    e = np.asarray(empty, dtype=bool)
    s[e] = np.maximum(s[e], EMPTY_SCORE)
    return s
