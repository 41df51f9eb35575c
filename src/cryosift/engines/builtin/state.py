"""The classification's state after an iteration: model parameters and per-particle assignments.

Saved exactly (tensors, not text) beside the RELION-style files so that a run continued
from iteration n gives bit-for-bit the same result as one that never stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path

FORMAT = "cryosift-class2d-state-1"


@dataclass
class ModelState:
    """Model and assignments after ``iteration`` (all lengths in classification px unless noted).

    Attributes
    ----------
    iteration : int
        Iterations done (0 before the first).
    references : torch.Tensor
        float32, shape (K, box, box): masked class averages.
    sigma2 : torch.Tensor
        float64, shape (box // 2 + 1,): noise spectrum.
    tau2 : torch.Tensor
        float64, shape (K, box // 2 + 1): prior power of each class average.
    class_prior : torch.Tensor
        float64, shape (K,): class fractions pi_k.
    prior_offsets : torch.Tensor
        float64, shape (K, 2): centre of each class's offset prior, px.
    sigma2_offset : float
        Variance of the offset prior, Å^2.
    radius : int
        Shells searched in the next iteration (RELION's current_size / 2).
    data_vs_prior, coverage : torch.Tensor
        float64, shape (K, box // 2 + 1): spectral SNR and Fourier coverage per class.
    resolution, acc_rotations, acc_translations : torch.Tensor
        float64, shape (K,): Å, degrees, Å.
    log_likelihood, ave_pmax : float
        Sum of log-likelihoods and mean largest posterior of the last iteration.
    offsets : torch.Tensor
        float64, shape (n, 2): each particle's (x, y) displacement from the box centre, px
        (RELION's rlnOriginX/YAngst = -offset x pixel size).
    psi : torch.Tensor
        float64, shape (n,): in-plane angle, degrees.
    classes : torch.Tensor
        int64, shape (n,): 0-based class (-1: not yet assigned).
    max_prob, particle_log_likelihood : torch.Tensor
        float64, shape (n,).
    n_significant : torch.Tensor
        int64, shape (n,).
    """

    iteration: int
    references: torch.Tensor
    sigma2: torch.Tensor
    tau2: torch.Tensor
    class_prior: torch.Tensor
    prior_offsets: torch.Tensor
    sigma2_offset: float
    radius: int
    data_vs_prior: torch.Tensor
    coverage: torch.Tensor
    resolution: torch.Tensor
    acc_rotations: torch.Tensor
    acc_translations: torch.Tensor
    log_likelihood: float
    ave_pmax: float
    offsets: torch.Tensor
    psi: torch.Tensor
    classes: torch.Tensor
    max_prob: torch.Tensor
    particle_log_likelihood: torch.Tensor
    n_significant: torch.Tensor

    @property
    def n_classes(self) -> int:
        return int(self.references.shape[0])

    def to(self, device) -> "ModelState":
        """The same state with tensors on ``device``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return ModelState(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()})


def save_state(path: str | Path, state: ModelState, settings: dict) -> None:
    """Write the state and the settings it was made with (atomically)."""
    payload = {"format": FORMAT, "settings": dict(settings)}
    payload.update({k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in asdict(state).items()})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_state(path: str | Path, device=None) -> tuple[ModelState, dict]:
    """Read a state saved by :func:`save_state`.

    Returns
    -------
    state : ModelState
    settings : dict
        The settings of the run that wrote it.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no saved classification state for this iteration (was the job made by cryosift?)")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a damaged file
        raise InputError(p, f"unreadable classification state ({type(exc).__name__}: {exc})") from None
    if payload.get("format") != FORMAT:
        raise InputError(p, f"not a cryosift 2D classification state (format {payload.get('format')!r})")
    names = [f.name for f in fields(ModelState)]
    missing = [n for n in names if n not in payload]
    if missing:
        raise InputError(p, f"classification state lacks {', '.join(missing)}")
    state = ModelState(**{n: payload[n] for n in names})
    return (state.to(device) if device is not None else state), payload["settings"]


def empty_assignments(n: int, initial_offsets: np.ndarray) -> dict:
    """Per-particle fields before any iteration."""
    return {
        "offsets": torch.as_tensor(initial_offsets, dtype=torch.float64),
        "psi": torch.zeros(n, dtype=torch.float64),
        "classes": torch.full((n,), -1, dtype=torch.int64),
        "max_prob": torch.zeros(n, dtype=torch.float64),
        "particle_log_likelihood": torch.zeros(n, dtype=torch.float64),
        "n_significant": torch.zeros(n, dtype=torch.int64),
    }
