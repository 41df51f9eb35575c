"""Shared fixtures: small particle sets written by the real libraries; CI that cannot pass by skipping."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.io.models import ParticleSet
from cryosift.io.mrc import write_stack

torch.set_num_threads(2)

#: Markers of tests that need a real program CI installs (.ci/run): RELION, the local SLURM cluster.
REQUIRED_IN_CI = ("relion", "slurm")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CI=true a RELION or SLURM test that skips fails: CI installs both, so a skip there means
    a broken install, and a run whose every RELION and SLURM test skipped must not pass."""
    outcome = yield
    report = outcome.get_result()
    needs = [m for m in REQUIRED_IN_CI if item.get_closest_marker(m)]
    if report.skipped and needs and in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where {' and '.join(needs)} must run: {reason}"


def make_particle_set(tmp_path, n=50, box=16, pixel_size=2.5, seed=0, with_3d=True, classes=4, stack_name="stack.mrcs"):
    """A ParticleSet with a real stack on disk, random CTF and poses (rot/tilt only if with_3d)."""
    rng = np.random.default_rng(seed)
    write_stack(tmp_path / stack_name, rng.normal(size=(n, box, box)).astype(np.float32), pixel_size)
    parts = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@{stack_name}" for i in range(n)],
        "rlnOpticsGroup": 1,
        "rlnDefocusU": rng.uniform(1e4, 3e4, n),
        "rlnDefocusV": rng.uniform(1e4, 3e4, n),
        "rlnDefocusAngle": rng.uniform(-180, 180, n),
        "rlnPhaseShift": np.zeros(n),
        "rlnAnglePsi": rng.uniform(-180, 180, n),
        "rlnOriginXAngst": rng.normal(scale=3, size=n),
        "rlnOriginYAngst": rng.normal(scale=3, size=n),
        "rlnClassNumber": rng.integers(1, classes + 1, n),
    })
    if with_3d:
        parts.insert(5, "rlnAngleRot", rng.uniform(-180, 180, n))
        parts.insert(6, "rlnAngleTilt", np.degrees(np.arccos(rng.uniform(-1, 1, n))))
        parts["rlnRandomSubset"] = rng.integers(1, 3, n)
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
        "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1], "rlnImagePixelSize": [pixel_size],
        "rlnImageSize": [box], "rlnImageDimensionality": [2],
    })
    return ParticleSet(parts, optics, source=tmp_path / "particles.star")


@pytest.fixture
def particle_set(tmp_path):
    return make_particle_set(tmp_path)
