"""Iterative particle selection from CryoSift class scores (attractor rule, rejection, cutoff split).

The policy (:mod:`cryosift.selection.policy`) is light: planning (the workflow's rounds, a
CryoSPARC job graph) imports it without the particle and scoring stack. The particle side
(:mod:`cryosift.selection.apply`) loads on first use of one of its names.
"""

from cryosift.selection.policy import (
    STATUSES,
    RoundDecision,
    SelectionPolicy,
    check_scores,
    decide_round,
    final_split,
    n_accepted,
    rounds_for_box,
)

_APPLY = ("ClassifiedParticles", "apply_final", "apply_round", "cutoff_name", "pool_particles")

__all__ = [
    "STATUSES", "ClassifiedParticles", "RoundDecision", "SelectionPolicy", "apply_final", "apply_round",
    "check_scores", "cutoff_name", "decide_round", "final_split", "n_accepted", "pool_particles", "rounds_for_box",
]


def __getattr__(name):
    if name in _APPLY:
        from cryosift.selection import apply

        return getattr(apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
