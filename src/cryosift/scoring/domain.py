"""Out-of-domain warning: a job whose scores look unlike those the model was validated on.

The shipped model was trained and validated on simulated class averages only
(src/cryosift/models/MODEL_CARD.md). On class averages unlike them (real RELION or cryoSPARC
jobs, other renderings) its scores can drift as a whole: every class scored 4-5, the particle
classes no better than the junk. The iterative selection would then reject most of a dataset.
This module says so, in one line that the score and select commands log, that
``selection.json`` and the workflow summary record, and that the report shows.

The criteria are stated a priori from the rubric and the selection policy (not fitted to any
real job), and their rate on held-out simulated jobs is measured in benchmarks/README.md:

- **nothing kept at 3.5**: no class with particles scores at or below 3.5, the paper's middle
  cutoff (C, "particle-like"). A 2D classification of a real dataset holds some classes of
  particles; a job where the model sees none would keep nothing at 3.5.
- **narrow band**: at least :data:`MIN_CLASSES_FOR_BAND` classes with particles all score within
  :data:`NARROW_BAND` grade (one letter of the rubric) of each other while their best is worse
  than the accept score (2.5), i.e. the model tells none of them apart and finds none good.
  (Clean jobs whose classes all score well are not flagged.)
- **most rejected**: classes that the loop would reject (score >= 4.5) hold more than half
  of the job's particles (needs the class distribution), or a selection round rejects more
  than half of its particles (:func:`rejection_warning`).

Empty classes (no particles) are left out of the first two criteria: they hold nothing to keep
(:mod:`cryosift.scoring.empty`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: The paper's middle cutoff: a job with no class at or below it keeps nothing there.
KEEP_CUTOFF = 3.5
#: Classes scoring at or below this are good (the attractor rule's accept score).
ACCEPT_SCORE = 2.5
#: The loop's reject score: classes at or above it are rejected in every round.
REJECT_SCORE = 4.5
#: Width of the "narrow band" in grades: one letter of the rubric.
NARROW_BAND = 1.0
#: The narrow-band criterion needs at least this many classes with particles.
MIN_CLASSES_FOR_BAND = 10
#: "Most" of a dataset: more than this fraction of its particles.
MOST = 0.5

FINE_TUNE = "cryosift train --init default --labels grades.csv -o mine.pt (docs/training.md)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainWarning:
    """One reason to doubt a job's scores.

    Attributes
    ----------
    code : {"nothing_kept", "narrow_band", "most_rejected"}
        Which criterion fired.
    reason : str
        The finding in words, with its numbers (no line breaks).
    """

    code: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DomainWarning":
        return cls(str(d["code"]), str(d["reason"]))


def check_scores_domain(scores, distribution=None, empty=None, cutoff: float = KEEP_CUTOFF,
                        accept_score: float = ACCEPT_SCORE, reject_score: float = REJECT_SCORE) -> list[DomainWarning]:
    """The out-of-domain criteria (module description) applied to one job's class scores.

    Parameters
    ----------
    scores : array_like
        Score per class (1 best ... 5 unusable), shape (k,).
    distribution : array_like, optional
        Fraction of the job's particles per class, shape (k,); enables the "most rejected" check.
    empty : array_like of bool, optional
        Classes without particles, shape (k,); default: distribution == 0 where given.
    cutoff, accept_score, reject_score : float
        The middle cutoff (3.5), accept score (2.5) and reject score (4.5).

    Returns
    -------
    list of DomainWarning
        Empty when the scores look like those of validated jobs.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return []
    d = None if distribution is None else np.asarray(distribution, dtype=np.float64)
    if empty is None:
        empty = (d <= 0) if d is not None else np.zeros(s.shape, bool)
    used = s[~np.asarray(empty, dtype=bool)]
    out = []
    if used.size and not (used <= cutoff).any():
        out.append(DomainWarning("nothing_kept", f"no class scores at or below {cutoff:g} (best {used.min():.2f})"))
    if used.size >= MIN_CLASSES_FOR_BAND and used.max() - used.min() < NARROW_BAND and used.min() > accept_score:
        out.append(DomainWarning("narrow_band", f"all {used.size} classes score within {used.max() - used.min():.2f} "
                                                f"grade ({used.min():.2f}-{used.max():.2f})"))
    if d is not None and d.sum() > 0:
        share = float(d[s >= reject_score].sum() / d.sum())
        if share > MOST:
            out.append(DomainWarning("most_rejected", f"classes scoring >= {reject_score:g} hold {share:.0%} of the "
                                                      "particles"))
    return out


def rejection_warning(rejected: int, total: int, reject_score: float = REJECT_SCORE) -> DomainWarning | None:
    """A warning when a selection step rejects more than half of its particles, else None."""
    if total > 0 and rejected / total > MOST:
        return DomainWarning("most_rejected", f"this round rejects {rejected:,} of {total:,} particles "
                                              f"({rejected / total:.0%}, classes scoring >= {reject_score:g})")
    return None


def warning_line(warnings, gallery: str | Path | None = None) -> str:
    """The one line that states the warnings and what to do about them ("" when there are none)."""
    warnings = [w if isinstance(w, DomainWarning) else DomainWarning.from_dict(w) for w in warnings]
    if not warnings:
        return ""
    where = f"the gallery {gallery}" if gallery is not None else "the gallery (scores.png beside scores.csv)"
    reasons = "; ".join(dict.fromkeys(w.reason for w in warnings))
    return (f"WARNING: out of domain: {reasons}: these class averages look unlike the simulated ones the model "
            f"was validated on, so its scores may not hold; check them against {where} and, if they disagree "
            f"with your eye, fine-tune: {FINE_TUNE}")


def log_warnings(warnings, gallery: str | Path | None = None, logger: logging.Logger | None = None) -> str:
    """Log :func:`warning_line` (once, at WARNING level) and return it."""
    line = warning_line(warnings, gallery)
    if line:
        (logger or log).warning(line)
    return line
