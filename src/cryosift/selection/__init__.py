"""Iterative particle selection from CryoSift class scores (attractor rule, rejection, cutoff split)."""

from cryosift.selection.apply import ClassifiedParticles, apply_final, apply_round, cutoff_name, pool_particles
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

__all__ = [
    "STATUSES", "ClassifiedParticles", "RoundDecision", "SelectionPolicy", "apply_final", "apply_round",
    "check_scores", "cutoff_name", "decide_round", "final_split", "n_accepted", "pool_particles", "rounds_for_box",
]
