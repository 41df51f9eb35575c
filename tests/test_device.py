"""The device helper: CPU or GPU, and deterministic algorithms on a GPU."""

from __future__ import annotations

import pytest
import torch

from cryosift.device import deterministic_gpu, pick_device
from cryosift.errors import InputError


@pytest.fixture
def restore_determinism(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_cpu_leaves_the_algorithms_alone(restore_determinism):
    torch.use_deterministic_algorithms(False)
    assert pick_device("cpu") == torch.device("cpu")
    assert not torch.are_deterministic_algorithms_enabled()


def test_deterministic_gpu_sets_warn_only_determinism_and_the_cublas_workspace(restore_determinism, monkeypatch):
    torch.use_deterministic_algorithms(False)
    deterministic_gpu()
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    # A setting the user made is kept.
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    deterministic_gpu()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(InputError, match="CUDA is not available"):
        pick_device("cuda")
