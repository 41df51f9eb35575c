"""Pick the compute device once: CUDA when present, CPU otherwise."""

from __future__ import annotations

import logging
import os

import torch

from cryosift.errors import InputError

log = logging.getLogger(__name__)


def pick_device(name: str | None = None) -> torch.device:
    """The torch device to run on.

    On a GPU, the deterministic variants of PyTorch's operations are chosen (see
    :func:`deterministic_gpu`), so reruns with the same seed give the same results there too.

    Parameters
    ----------
    name : str, optional
        ``cuda``, ``cuda:1`` or ``cpu``; default: the first GPU if there is one.
    """
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(None, f"device {name} asked for, but CUDA is not available (use --device cpu)")
        if dev.type == "cuda":
            deterministic_gpu()
        return dev
    if torch.cuda.is_available():
        deterministic_gpu()
        return torch.device("cuda")
    log.debug("no GPU found; running on the CPU")
    return torch.device("cpu")


def deterministic_gpu() -> None:
    """Ask PyTorch for deterministic GPU algorithms (atomic-add sums such as ``index_add_``
    otherwise add in a different order on every run).

    Where an operation has no deterministic variant PyTorch only warns. cuBLAS needs its
    workspace setting before CUDA starts; a value already in the environment is kept.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True, warn_only=True)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch (default: the SLURM/Snakemake allocation or all cores)."""
    if threads is None:
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or os.cpu_count() or 1
    torch.set_num_threads(max(1, int(threads)))
