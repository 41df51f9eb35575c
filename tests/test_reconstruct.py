"""Reconstruction from known poses: exact inversion of the projector, SNR-limited resolution
on simulated particles, half maps by rlnRandomSubset, symmetry, CLI and input errors."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import make_particle_set
from cryosift.errors import InputError
from cryosift.io import read_map, read_particles_star, write_particles_star, write_stack
from cryosift.io.models import ParticleSet
from cryosift.io.rotations import euler_to_matrix, matrix_to_euler
from cryosift.projection import Projector
from cryosift.reconstruct import reconstruct_half_maps, reconstruct_particles, symmetry_operators
from cryosift.reconstruct.symmetry import expand_rotations, symmetry_order
from cryosift.simulate import preset, simulate_dataset
from cryosift.validate.fsc import fsc_curve, resolution_at


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """1,500 true particles (64 px, 3 Å/px, SNR 0.1, CTF, shifts) with true poses and half sets."""
    spec = preset("demo", junk={}, n_particles=1500, snr=0.1, seed=11)
    return simulate_dataset(spec, tmp_path_factory.mktemp("sim"))


def blob_map(box: int, centres_px, sigma_px: float = 1.5) -> np.ndarray:
    """Sum of Gaussians at (x, y, z) offsets from the box centre, float32 [z, y, x]."""
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((box,) * 3)
    for px, py, pz in centres_px:
        vol += np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / (2 * sigma_px**2))
    return vol.astype(np.float32)


def projected_set(tmp_path, volume, n, pixel_size=2.0, seed=0, shift_sd_px=1.5, ctf=False) -> ParticleSet:
    """Clean projections with the projector at random poses; RELION origins = minus the displacement."""
    rng = np.random.default_rng(seed)
    box = volume.shape[0]
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    from scipy.spatial.transform import Rotation

    rot, tilt, psi = matrix_to_euler(Rotation.from_quat(q).as_matrix())
    origins = rng.normal(scale=shift_sd_px, size=(n, 2))
    proj = Projector(torch.from_numpy(volume))
    images = proj.project(torch.from_numpy(euler_to_matrix(rot, tilt, psi)).float(),
                          torch.from_numpy(-origins).float()).numpy()
    write_stack(tmp_path / "proj.mrcs", images, pixel_size)
    parts = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@proj.mrcs" for i in range(n)], "rlnOpticsGroup": 1,
        "rlnAngleRot": rot, "rlnAngleTilt": tilt, "rlnAnglePsi": psi,
        "rlnOriginXAngst": origins[:, 0] * pixel_size, "rlnOriginYAngst": origins[:, 1] * pixel_size,
        "rlnRandomSubset": np.arange(n) % 2 + 1,
    })
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g1"], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnImagePixelSize": [pixel_size], "rlnImageSize": [box], "rlnImageDimensionality": [2]})
    return ParticleSet(parts, optics, source=tmp_path / "proj.star")


def test_reconstruction_inverts_the_projector(tmp_path):
    box = 32
    truth = blob_map(box, [(0, 0, 0), (6, 2, -3), (-5, 7, 4), (2, -8, 6), (12, 0, 0)])
    pset = projected_set(tmp_path, truth, 1200)
    vol, pixel_size = reconstruct_particles(pset, ctf=False, wiener=False)
    assert pixel_size == 2.0 and vol.shape == (box, box, box) and vol.dtype == np.float32
    curve = fsc_curve(truth, vol, pixel_size)
    # The map is the projected one, limited only by trilinear interpolation near Nyquist.
    assert curve.fsc[1:9].min() > 0.995
    assert curve.fsc[1:12].min() > 0.95
    # Scale and position are exact: a blob 12 px off-centre keeps its height (gridding correction).
    assert vol[16, 16, 28] == pytest.approx(truth[16, 16, 28], rel=0.03)
    assert np.corrcoef(vol.ravel(), truth.ravel())[0, 1] > 0.995


def test_resolution_matches_what_the_snr_allows(simulated):
    pset = read_particles_star(simulated.particles_star)
    truth, pixel_size = read_map(simulated.map_mrc)
    half1, half2, full = reconstruct_half_maps(pset)
    box = full.shape[0]
    vs_truth = resolution_at(fsc_curve(truth, full, pixel_size), 0.5)
    half = resolution_at(fsc_curve(half1, half2, pixel_size), 0.143)
    shell = lambda d: box * pixel_size / d  # noqa: E731
    # The full map's FSC 0.5 against the truth sits within two shells of the half-map 0.143 estimate.
    assert abs(shell(vs_truth) - shell(half)) <= 2.0
    assert vs_truth < 12.0
    # Wrong origins (sign flipped) blur the map: the convention matters.
    flipped = pset.subset(np.arange(len(pset)))
    flipped.particles[["rlnOriginXAngst", "rlnOriginYAngst"]] *= -1
    worse, _ = reconstruct_particles(flipped)
    assert resolution_at(fsc_curve(truth, worse, pixel_size), 0.5) > vs_truth + 3.0


def test_half_maps_follow_random_subset(simulated):
    pset = read_particles_star(simulated.particles_star)
    half1, half2, _ = reconstruct_half_maps(pset, wiener=False)
    one = pset.particles["rlnRandomSubset"].to_numpy() == 1
    alone, _ = reconstruct_particles(pset, subset=one, wiener=False)
    assert np.allclose(alone, half1, atol=1e-4 * np.abs(alone).max())
    assert np.corrcoef(half1.ravel(), half2.ravel())[0, 1] < 0.95
    no_halves = ParticleSet(pset.particles.drop(columns="rlnRandomSubset"), pset.optics, pset.source)
    with pytest.raises(InputError, match="rlnRandomSubset"):
        reconstruct_half_maps(no_halves)


def test_symmetry_operators_form_groups():
    for name, order in (("C1", 1), ("C4", 4), ("D2", 4), ("d7", 14)):
        ops = symmetry_operators(name)
        assert len(ops) == order == symmetry_order(name)
        assert np.allclose(np.einsum("nij,nkj->nik", ops, ops), np.eye(3), atol=1e-12)
        prod = np.einsum("aij,bjk->abik", ops, ops).reshape(-1, 9)
        # Closed under products: every product is one of the operators.
        assert np.abs(prod[:, None, :] - ops.reshape(1, -1, 9)).max(axis=2).min(axis=1).max() < 1e-9
    with pytest.raises(InputError, match="symmetry"):
        symmetry_operators("I3")
    assert expand_rotations(np.eye(3)[None], "C3").shape == (3, 3, 3)


def test_symmetric_reconstruction_from_few_views(tmp_path):
    box = 32
    arm = [(7, 2, 3), (3, 0, -5)]
    centres = [(x * c - y * s, x * s + y * c, z) for k in range(4) for (x, y, z) in arm
               for c, s in [(np.cos(k * np.pi / 2), np.sin(k * np.pi / 2))]]
    truth = blob_map(box, centres)
    pset = projected_set(tmp_path, truth, 24, seed=3)
    c1, _ = reconstruct_particles(pset, ctf=False, wiener=False)
    c4, _ = reconstruct_particles(pset, symmetry="C4", ctf=False, wiener=False)
    err = lambda v: np.linalg.norm(v - truth) / np.linalg.norm(truth)  # noqa: E731
    assert err(c4) < 0.5 * err(c1)
    # C4 about z: a quarter turn in the (x, y) plane maps the map onto itself.
    rotated = np.rot90(c4[:, 1:, 1:], k=1, axes=(1, 2))
    assert np.corrcoef(rotated.ravel(), c4[:, 1:, 1:].ravel())[0, 1] > 0.99


def test_cli_writes_maps_with_pixel_size(simulated, tmp_path, monkeypatch):
    from cryosift.commands import reconstruct as cmd

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    cmd.add_args(parser)
    cmd.main(parser.parse_args([str(simulated.particles_star), "-o", "out/recon", "--symmetry", "C1"]))
    full, pixel_size = read_map(tmp_path / "out" / "recon.mrc")
    half1, _ = read_map(tmp_path / "out" / "recon_half1.mrc")
    truth, _ = read_map(simulated.map_mrc)
    assert pixel_size == pytest.approx(3.0)
    assert resolution_at(fsc_curve(truth, full, pixel_size), 0.5) < 12.0
    assert resolution_at(fsc_curve(truth, half1, pixel_size), 0.5) < 15.0


def test_bad_inputs_name_the_file(tmp_path):
    pset = make_particle_set(tmp_path, n=20, box=16, with_3d=False)
    with pytest.raises(InputError, match="rlnAngleRot") as err:
        reconstruct_particles(pset)
    assert str(tmp_path / "particles.star") in str(err.value)
    odd = make_particle_set(tmp_path, n=10, box=15)
    with pytest.raises(InputError, match="odd"):
        reconstruct_particles(odd)
    from cryosift.cli import main

    star = tmp_path / "noposes.star"
    write_particles_star(star, pset)
    assert main(["reconstruct", str(star), "-o", str(tmp_path / "x")]) == 2


def test_builtin_engine_reconstructs_through_the_protocol(simulated, tmp_path):
    from cryosift.engines import get_engine

    engine = get_engine("builtin", device="cpu", threads=1)
    result = engine.reconstruct(simulated.particles_star, tmp_path / "job", symmetry="C1")
    full, pixel_size = read_map(result.map)
    truth, _ = read_map(simulated.map_mrc)
    assert pixel_size == pytest.approx(3.0)
    assert resolution_at(fsc_curve(truth, full, pixel_size), 0.5) < 12.0
    assert result.map.parent == tmp_path / "job" and all(h.exists() for h in result.half_maps)
