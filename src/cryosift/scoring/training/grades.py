"""Ground-truth grades of class averages: from purity, alignment and resolution to the rubric.

The CryoSift rubric (Acta Cryst F 2025) grades a class average A (1, best: secondary
structure, very sharp), B (2: secondary structure, some fuzzy regions), C (3: overall shape
and some domain detail), D (4: particle-like but fuzzy, artefacts) or F (5: nothing
particle-like). For simulated data each class gets a continuous grade in [1, 5] from three
measured quantities (see :mod:`cryosift.scoring.training.truth`):

- ``purity``: fraction of the class's members that are particles aligned with it (the
  ``aligned_purity`` of the truth table: junk and misaligned particles both count against it);
- ``align_rel``: RMS alignment error of its true members (in-plane rotation at the particle
  radius combined with the shift error, Å) divided by the particle diameter;
- ``resolution_A``: where the FRC between the class average and the ideal average (noise
  free projections of its true members, perfectly aligned) falls below 0.5; it is judged
  both in Å (secondary structure needs about 7 Å) and relative to the particle diameter
  (resolution elements across the particle: a large particle shows its domains at 20 Å, a
  small one is a blob), and the two partial grades are averaged.

Each quantity maps to a partial grade by piecewise-linear interpolation between the knots
below (resolution on a log scale), and the partial "badnesses" b = g - 1 combine by a
3-norm, ``grade = 1 + min(4, (b_res^3 + b_purity^3 + b_align^3)^(1/3))``: the worst aspect
dominates, several middling ones add up a little, and the grade is monotonic in each.
docs/training.md gives the reasoning behind the knots.
"""

from __future__ import annotations

import numpy as np

#: (resolution Å, grade) knots: secondary structure shows at about 7 Å.
RESOLUTION_KNOTS = ((7.0, 1.0), (10.0, 2.0), (15.0, 3.0), (24.0, 4.0), (38.0, 5.0))
#: (diameter / resolution, grade) knots: resolution elements across the particle.
RELATIVE_KNOTS = ((2.5, 5.0), (4.0, 4.0), (7.0, 3.0), (12.0, 2.0), (20.0, 1.0))
#: (purity, grade) knots: a class must be nearly free of junk to be kept (grade <= 3.5).
PURITY_KNOTS = ((0.4, 5.0), (0.65, 4.0), (0.8, 3.0), (0.9, 2.0), (1.0, 1.0))
#: (alignment error / diameter, grade) knots.
ALIGNMENT_KNOTS = ((0.02, 1.0), (0.05, 2.0), (0.09, 3.0), (0.15, 4.0), (0.25, 5.0))
#: Exponent of the norm that combines the partial grades.
COMBINE_NORM = 3.0
#: Rubric letters for grades 1..5.
LETTERS = ("A", "B", "C", "D", "F")


def _interp(x, knots, log: bool = False) -> np.ndarray:
    xs = np.array([k[0] for k in knots], dtype=np.float64)
    ys = np.array([k[1] for k in knots], dtype=np.float64)
    v = np.asarray(x, dtype=np.float64)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v, xs = np.log(v), np.log(xs)
    out = np.interp(v, xs, ys)
    return np.where(np.isnan(v), 5.0, out)


def resolution_grade(resolution_A, diameter_A=None) -> np.ndarray:
    """Partial grade (1..5) of the FRC resolution in Å; non-finite -> 5.

    With the particle diameter (Å), the mean of the absolute grade and the grade of
    ``diameter / resolution`` (:data:`RELATIVE_KNOTS`).
    """
    res = np.asarray(resolution_A, dtype=np.float64)
    res = np.where(np.isfinite(res) & (res > 0), res, np.inf)
    finite = np.where(np.isinf(res), 1.0, res)
    g = _interp(finite, RESOLUTION_KNOTS, log=True)
    if diameter_A is not None:
        rel = _interp(np.asarray(diameter_A, dtype=np.float64) / finite, RELATIVE_KNOTS, log=True)
        g = 0.5 * (g + rel)
    return np.where(np.isinf(res), 5.0, g)


def purity_grade(purity) -> np.ndarray:
    """Partial grade (1..5) of the true-particle fraction; NaN (empty class) -> 5."""
    return _interp(purity, PURITY_KNOTS)


def alignment_grade(align_rel) -> np.ndarray:
    """Partial grade (1..5) of the RMS alignment error relative to the particle diameter; NaN -> 5."""
    return _interp(align_rel, ALIGNMENT_KNOTS)


def combine(*partial) -> np.ndarray:
    """Combine partial grades (each 1..5): 1 + min(4, 3-norm of (g - 1))."""
    b = np.stack(np.broadcast_arrays(*[np.clip(np.asarray(g, dtype=np.float64), 1.0, 5.0) - 1.0 for g in partial]))
    return 1.0 + np.minimum(4.0, (b ** COMBINE_NORM).sum(axis=0) ** (1.0 / COMBINE_NORM))


def class_grade(purity, align_rel, resolution_A, diameter_A=None) -> np.ndarray:
    """Continuous grade 1 (best) ... 5 (unusable) of class averages from their ground-truth measures.

    Parameters
    ----------
    purity : array_like
        Fraction of each class's members that are particles aligned with it (NaN for empty classes).
    align_rel : array_like
        RMS alignment error of the true members / particle diameter (NaN when undefined).
    resolution_A : array_like
        FRC-0.5 resolution against the ideal average, Å (inf when undefined).
    diameter_A : array_like, optional
        Particle diameter, Å (see :func:`resolution_grade`).

    Returns
    -------
    np.ndarray
        float64 grades in [1, 5], shape (k,).
    """
    pur = np.atleast_1d(np.asarray(purity, dtype=np.float64))
    g = combine(resolution_grade(resolution_A, diameter_A), purity_grade(pur), alignment_grade(align_rel))
    return np.atleast_1d(np.where(~(pur > 0), 5.0, g))


def grade_letter(grade) -> np.ndarray:
    """Rubric letter of continuous grades: nearest of A=1, B=2, C=3, D=4, F=5."""
    g = np.clip(np.rint(np.asarray(grade, dtype=np.float64)), 1, 5).astype(int)
    return np.array(LETTERS, dtype=object)[np.atleast_1d(g) - 1]


def letter_grade(letter: str) -> float:
    """Grade of a rubric letter (A..F, E counted as F), case-insensitive; ValueError otherwise."""
    key = str(letter).strip().upper()
    key = "F" if key == "E" else key
    if key not in LETTERS:
        raise ValueError(f"{letter!r} is not a grade letter (A, B, C, D, F)")
    return float(LETTERS.index(key) + 1)
