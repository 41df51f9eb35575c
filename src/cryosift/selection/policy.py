"""The CryoSift iterative selection policy, as pure functions of per-class scores.

Scores run from 1.0 (best) to 5.0 (unusable) and may lie outside that range; they are
compared as numbers, so negative scores count as the best and a score exactly at a
threshold falls on the side the rule names (<= or >=).

- Rounds: the number of select steps follows the extraction box: < 200 px: 5,
  200-300 px: 3, > 300 px: 2.
- Attractor rule (first round): of the classes scoring <= 2.5, sorted best first (ties by
  class number), the best 70% by count (rounded down) leave the loop as *accepted*; the
  rest stay in the loop as *attractors*, giving the next classification good references.
- Every round: classes scoring >= 4.5 are *rejected*; all others stay (*kept*, including
  attractors) and are classified again.
- Early stop: from round 2 on, a round that rejects nothing ends the loop; so do the last
  round and a round that leaves nothing to classify again (every class accepted or rejected).
- Final: the kept particles are pooled with the accepted ones and classified once more;
  at each cutoff (2.5 / 3.5 / 4.5) the classes scoring <= cutoff are kept.

Differences from the published pipeline, on purpose: scores are numbers (it parsed them
with a pattern that turned negative scores and NaN into 5.0), NaN is an error naming the
class, a class missing from the scores is an error (it counted as 5.0), exactly
floor(70%) classes are accepted (it accepted every class <= 2.5 when that floor was 0)
and the final split keeps scores <= cutoff as the paper states (it kept < cutoff).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from cryosift.errors import InputError

#: Statuses of a class in a round, in report order.
STATUSES = ("accepted", "attractor", "kept", "rejected")


@dataclass(frozen=True)
class SelectionPolicy:
    """Thresholds of the iterative selection.

    Attributes
    ----------
    accept_score : float
        Classes scoring <= this are candidates for acceptance (2.5).
    accept_fraction : float
        Fraction of those candidates, best first, that leave the loop as accepted (0.7).
    reject_score : float
        Classes scoring >= this are rejected in every round (4.5).
    cutoffs : tuple of float
        Final split: keep classes scoring <= each cutoff (2.5, 3.5, 4.5).
    accept_every_round : bool
        Apply the attractor rule in every round, not only the first.
    """

    accept_score: float = 2.5
    accept_fraction: float = 0.7
    reject_score: float = 4.5
    cutoffs: tuple = (2.5, 3.5, 4.5)
    accept_every_round: bool = False

    def __post_init__(self):
        if not 0.0 <= self.accept_fraction <= 1.0:
            raise ValueError(f"accept fraction must lie in [0, 1], got {self.accept_fraction}")
        if not self.accept_score < self.reject_score:
            raise ValueError(f"accept score {self.accept_score} must be below the reject score {self.reject_score}")
        cutoffs = tuple(float(c) for c in self.cutoffs)
        if not cutoffs or any(not math.isfinite(c) for c in cutoffs) or len(set(cutoffs)) != len(cutoffs):
            raise ValueError(f"cutoffs must be distinct finite numbers, got {self.cutoffs}")
        object.__setattr__(self, "cutoffs", tuple(sorted(cutoffs)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        return d


def rounds_for_box(box: int) -> int:
    """Select rounds for an extraction box of ``box`` px: < 200: 5, 200-300: 3, > 300: 2."""
    if box < 200:
        return 5
    if box <= 300:
        return 3
    return 2


def check_scores(scores: pd.DataFrame, source=None) -> pd.DataFrame:
    """Validate a per-class score table: ``class`` (int) and ``score`` (finite float).

    Raises
    ------
    InputError
        Missing columns, duplicate classes, or a NaN or infinite score (naming the class).
    """
    for col in ("class", "score"):
        if col not in scores:
            raise InputError(source, f"score table has no {col} column")
    out = pd.DataFrame({"class": pd.to_numeric(scores["class"]).astype(np.int64),
                        "score": pd.to_numeric(scores["score"], errors="coerce").astype(np.float64)})
    bad = ~np.isfinite(out["score"].to_numpy())
    if bad.any():
        c = int(out["class"][bad].iloc[0])
        raise InputError(source, f"class {c}: score is {scores['score'][bad].iloc[0]!r}, not a finite number")
    dup = out["class"].duplicated()
    if dup.any():
        raise InputError(source, f"class {int(out['class'][dup].iloc[0])} is listed more than once")
    return out


def n_accepted(n_candidates: int, fraction: float) -> int:
    """How many of ``n_candidates`` classes are accepted: floor(fraction x n), robust to rounding."""
    return int(math.floor(fraction * n_candidates + 1e-9))


@dataclass
class RoundDecision:
    """What one round does with each class.

    Attributes
    ----------
    round, rounds : int
        This round (1-based) and the planned number of rounds.
    table : pd.DataFrame
        ``class``, ``score``, ``status`` (one of :data:`STATUSES`), ``rule`` (text).
    stop : bool
        True when the loop ends after this round (last round, or nothing rejected from round 2 on).
    rules : dict
        Status -> the rule that assigns it, in words.
    """

    round: int
    rounds: int
    table: pd.DataFrame
    stop: bool
    rules: dict = field(default_factory=dict)

    def classes(self, *statuses: str) -> np.ndarray:
        """Class numbers with any of ``statuses``, ascending."""
        return np.sort(self.table.loc[self.table["status"].isin(statuses), "class"].to_numpy())


def decide_round(scores: pd.DataFrame, round: int, rounds: int, policy: SelectionPolicy = SelectionPolicy(),
                 source=None) -> RoundDecision:
    """Apply one round of the policy to a job's class scores.

    Parameters
    ----------
    scores : pd.DataFrame
        ``class`` and ``score`` per class of this round's classification.
    round : int
        1-based round number; the attractor rule applies in round 1 (or every round).
    rounds : int
        Planned rounds (:func:`rounds_for_box`).
    policy : SelectionPolicy
        Thresholds.
    source : optional
        File the scores came from, for error messages.
    """
    if round < 1 or rounds < 1:
        raise ValueError(f"round and rounds must be >= 1, got round {round} of {rounds}")
    table = check_scores(scores, source)
    s = table["score"].to_numpy()
    status = np.full(len(table), "kept", dtype=object)
    rejected = s >= policy.reject_score
    status[rejected] = "rejected"
    rules = {"rejected": f"score >= {policy.reject_score:g}",
             "kept": f"score < {policy.reject_score:g}, classified again"}
    if round == 1 or policy.accept_every_round:
        candidates = np.flatnonzero(s <= policy.accept_score)
        order = candidates[np.lexsort((table["class"].to_numpy()[candidates], s[candidates]))]
        k = n_accepted(len(order), policy.accept_fraction)
        status[order[:k]] = "accepted"
        status[order[k:]] = "attractor"
        rules["accepted"] = (f"best {policy.accept_fraction:.0%} (rounded down) of the classes scoring "
                             f"<= {policy.accept_score:g}, best first; they leave the loop")
        rules["attractor"] = f"the other classes scoring <= {policy.accept_score:g}; they stay as attractors"
        rules["kept"] = f"{policy.accept_score:g} < score < {policy.reject_score:g}, classified again"
    table["status"] = status
    table["rule"] = [rules[x] for x in status]
    nothing_left = not np.isin(status, ("kept", "attractor")).any()
    stop = round >= rounds or (round > 1 and not rejected.any()) or nothing_left
    return RoundDecision(round, rounds, table, bool(stop), rules)


def final_split(scores: pd.DataFrame, cutoffs=(2.5, 3.5, 4.5), source=None) -> pd.DataFrame:
    """Which classes each cutoff keeps (score <= cutoff).

    Returns
    -------
    pd.DataFrame
        ``class``, ``score`` and one boolean column per cutoff, named ``le_<cutoff>``.
    """
    table = check_scores(scores, source)
    for c in sorted(float(c) for c in cutoffs):
        table[f"le_{c:g}"] = table["score"].to_numpy() <= c
    return table
