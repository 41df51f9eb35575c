"""Pick the compute device once: CUDA when present, CPU otherwise."""

from __future__ import annotations

import logging
import os

import torch

from cryosift.errors import InputError

log = logging.getLogger(__name__)


def pick_device(name: str | None = None) -> torch.device:
    """The torch device to run on.

    Parameters
    ----------
    name : str, optional
        ``cuda``, ``cuda:1`` or ``cpu``; default: the first GPU if there is one.
    """
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(None, f"device {name} asked for, but CUDA is not available (use --device cpu)")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    log.debug("no GPU found; running on the CPU")
    return torch.device("cpu")


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch (default: the SLURM/Snakemake allocation or all cores)."""
    if threads is None:
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or os.cpu_count() or 1
    torch.set_num_threads(max(1, int(threads)))
