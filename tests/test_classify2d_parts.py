"""Pieces of the builtin 2D classification: conventions, search, noise, class update, figures."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.ctf import ctf_2d
from cryosift.engines.builtin.accuracy import _error_schedule, estimated_resolution, next_radius
from cryosift.engines.builtin.grids import (
    coefficients,
    from_half_plane_ft,
    half_plane_shells,
    scatter_half_plane,
    shell_power,
    to_half_plane_ft,
    translations,
)
from cryosift.engines.builtin.mstep import split_largest, wiener_update
from cryosift.engines.builtin.noise import shell_pixel_counts, update_noise
from cryosift.engines.builtin.rotation import padded_spectrum, rotate_coefficients, sample_rotated, wrap_degrees
from cryosift.engines.builtin.search import ReferenceBank, SearchGrid, search
from cryosift.io import write_map, write_particles_star
from cryosift.io.models import ParticleSet
from cryosift.io.mrc import read_stack
from cryosift.io.rotations import euler_to_matrix
from cryosift.projection import Projector

BOX, APIX = 32, 4.0


@pytest.fixture(scope="module")
def volume():
    """An asymmetric map of six Gaussian blobs, [z, y, x]."""
    rng = np.random.default_rng(4)
    g = torch.arange(BOX, dtype=torch.float32) - BOX // 2
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    vol = torch.zeros(BOX, BOX, BOX)
    for c in rng.normal(scale=4.0, size=(6, 3)):
        vol += torch.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * 2.0**2))
    return vol


def test_in_plane_rotation_follows_relion_psi(volume):
    proj = Projector(volume)
    psi = 37.0
    upright = proj.project(torch.tensor(euler_to_matrix(0, 0, 0), dtype=torch.float32))
    turned = proj.project(torch.tensor(euler_to_matrix(0, 0, psi), dtype=torch.float32))
    coef = coefficients(BOX, BOX // 2)
    want = coef.gather(to_half_plane_ft(turned))[0]
    spectrum = padded_spectrum(upright)
    err = lambda a: float((sample_rotated(spectrum, coef, torch.tensor([a]))[0, 0] - want).abs().norm() / want.abs().norm())  # noqa: E731
    assert err(psi) < 0.05
    assert err(-psi) > 0.5
    back = rotate_coefficients(want[None], coef, torch.tensor([-psi]))[0]
    upright_ft = coef.gather(to_half_plane_ft(upright))[0]
    assert float((back - upright_ft).abs().norm() / upright_ft.abs().norm()) < 0.08  # two interpolations


def test_half_plane_coefficients_round_trip_below_nyquist():
    rng = np.random.default_rng(0)
    img = torch.tensor(rng.normal(size=(2, BOX, BOX)), dtype=torch.float32)
    coef = coefficients(BOX, BOX // 2)
    shell, independent = half_plane_shells(BOX)
    assert coef.m == int((independent & (shell < BOX // 2)).sum())
    back = from_half_plane_ft(scatter_half_plane(coef, coef.gather(to_half_plane_ft(img))), BOX)
    lowpass = from_half_plane_ft(to_half_plane_ft(img) * (shell < BOX // 2), BOX)
    assert torch.allclose(back, lowpass, atol=1e-5)
    assert len(translations(5, 2)) == 21 and translations(5, 2)[0].abs().sum() == 0


def _particles(volume, n, seed, noise=0.0):
    """Projections of three views at random psi and displacements, with CTF."""
    rng = np.random.default_rng(seed)
    views = [(0, 0), (60, 40), (130, 90)]
    proj = Projector(volume)
    refs = proj.project(torch.tensor(euler_to_matrix([v[0] for v in views], [v[1] for v in views], 0),
                                     dtype=torch.float32))
    k = rng.integers(0, 3, n)
    psi = rng.uniform(-180, 180, n)
    shift = rng.uniform(-3, 3, (n, 2))
    mats = torch.tensor(euler_to_matrix([views[i][0] for i in k], [views[i][1] for i in k], psi), dtype=torch.float32)
    clean = proj.project(mats, torch.tensor(shift, dtype=torch.float32))  # displaced by +shift
    ctf = ctf_2d(BOX, APIX, rng.uniform(1e4, 2e4, n), rng.uniform(1e4, 2e4, n), 0.0, 300, 2.7, 0.1, half=True)
    img = from_half_plane_ft(to_half_plane_ft(clean) * ctf, BOX) + noise * torch.randn(n, BOX, BOX)
    return refs, img, ctf, k, psi, shift


def test_search_recovers_class_angle_and_displacement(volume):
    refs, img, ctf, k, psi, shift = _particles(volume, 40, seed=1, noise=0.01)
    coef = coefficients(BOX, 15)
    grid = SearchGrid.make(12, 5, 2, 1)
    bank = ReferenceBank.build(refs, coef, grid)
    x, c = coef.gather(to_half_plane_ft(img)), coef.gather(ctf)
    inv = torch.full((coef.m,), 1e4)
    post = search(x, c * inv, c * c * inv, torch.zeros(40, 2), coef, grid, bank, torch.log(torch.full((3,), 1 / 3)),
                  torch.zeros(3, 2), 100.0, 0.999, 32, False)
    assert (post.best_class.numpy() == k).all()
    err = np.abs(wrap_degrees(torch.as_tensor(post.best_psi.numpy() - psi)).numpy())
    assert np.median(err) < 3.5 and err.max() < 9
    assert np.abs(post.best_shift.numpy() - shift).max() < 1.0
    assert post.max_prob.min() > 0.5


@pytest.mark.relion
@pytest.mark.skipif(shutil.which("relion_project") is None, reason="relion_project not on PATH")
def test_offsets_follow_relion_origins(volume, tmp_path):
    """Images made by relion_project from known psi and origins are found at psi and at -origin."""
    write_map(tmp_path / "vol.mrc", volume.numpy(), APIX)
    psi = np.array([0.0, 30.0, 90.0, -60.0, 150.0, 45.0])
    origin = np.array([[0, 0], [0, 3], [2, 0], [-3, 1], [1, -2], [2.5, -1.5]])
    parts = pd.DataFrame({"rlnImageName": [f"{i + 1:06d}@x.mrcs" for i in range(6)], "rlnOpticsGroup": 1,
                          "rlnAngleRot": 0.0, "rlnAngleTilt": 0.0, "rlnAnglePsi": psi,
                          "rlnOriginXAngst": origin[:, 0] * APIX, "rlnOriginYAngst": origin[:, 1] * APIX})
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g"], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnImagePixelSize": [APIX], "rlnImageSize": [BOX], "rlnImageDimensionality": [2]})
    write_particles_star(tmp_path / "angles.star", ParticleSet(parts, optics))
    subprocess.run(["relion_project", "--i", "vol.mrc", "--ang", "angles.star", "--o", "proj", "--angpix", str(APIX)],
                   cwd=tmp_path, check=True, capture_output=True)
    images, _ = read_stack(tmp_path / "proj.mrcs")
    img = torch.tensor(np.array(images))
    coef = coefficients(BOX, 15)
    grid = SearchGrid.make(6, 4, 1, 1)
    bank = ReferenceBank.build(img[:1], coef, grid)  # psi 0, origin 0
    x = coef.gather(to_half_plane_ft(img))
    ones, inv = torch.ones_like(x.real), torch.full((coef.m,), 1e3)
    post = search(x, ones * inv, ones * inv, torch.zeros(6, 2), coef, grid, bank, torch.zeros(1), torch.zeros(1, 2),
                  100.0, 0.999, 32, False)
    assert np.abs(wrap_degrees(torch.as_tensor(post.best_psi.numpy() - psi)).numpy()).max() < 2.0
    assert np.abs(post.best_shift.numpy() + origin).max() < 0.3


def test_noise_estimate_of_pure_noise_images():
    sigma_real = 0.7
    rng = np.random.default_rng(2)
    img = torch.tensor(rng.normal(scale=sigma_real, size=(400, BOX, BOX)), dtype=torch.float32)
    coef = coefficients(BOX, 10)
    power = shell_power(to_half_plane_ft(img), BOX // 2 + 1)
    zero = torch.zeros((1, coef.m), dtype=torch.complex64)
    parts = [(zero, zero.to(torch.complex128), torch.zeros((1, coef.m), dtype=torch.float64))]
    sigma2 = update_noise(power, 400, coef, torch.ones(BOX // 2 + 1, dtype=torch.float64), parts)
    expected = sigma_real**2 / (2 * BOX * BOX)  # per real/imaginary part, rfft2(norm="forward")
    assert np.allclose(sigma2[1:].numpy(), expected, rtol=0.05)
    shell, independent = half_plane_shells(BOX)
    assert shell_pixel_counts(BOX).sum() == int((independent & (shell <= BOX // 2)).sum())


def test_wiener_update_regularises_only_above_minres_shells():
    coef = coefficients(BOX, BOX // 2)
    num = torch.ones((1, coef.m), dtype=torch.complex128)
    den = torch.full((1, coef.m), 2.0, dtype=torch.float64)
    shells = BOX // 2 + 1
    strong = wiener_update(num, den, torch.full((1, shells), 1e6, dtype=torch.float64), 2.0, coef, shells)
    assert torch.allclose(strong[0].real, torch.full_like(strong[0].real, 0.5), rtol=1e-5)
    weak, dvp, _ = wiener_update(num, den, torch.full((1, shells), 1e-3, dtype=torch.float64), 2.0, coef, shells)
    low = coef.shell < 5
    assert torch.allclose(weak[0, low].real, torch.full_like(weak[0, low].real, 0.5))
    assert float(weak[0, ~low].real.max()) < 0.5 / 100  # 1 / (T tau2) = 500 against den = 2
    assert np.allclose(dvp[0, 1:BOX // 2].numpy(), 2.0 * 2.0 * 1e-3)


def test_resolution_and_search_radius_follow_the_ssnr():
    dvp = torch.zeros((2, BOX // 2 + 1), dtype=torch.float64)
    dvp[0, :9] = 5.0  # resolved up to shell 8
    dvp[1, :4] = 5.0
    prior = torch.tensor([0.6, 0.4], dtype=torch.float64)
    res = estimated_resolution(dvp, BOX, APIX, prior)
    assert res[0] == pytest.approx(BOX * APIX / 8) and res[1] == pytest.approx(BOX * APIX / 3)
    assert estimated_resolution(dvp, BOX, APIX, torch.tensor([1.0, 0.0]))[1] == 999.0
    assert next_radius(dvp, prior, BOX, max_radius=BOX // 2) == 16  # min(8 + 10, 16)
    assert next_radius(dvp, prior, BOX, max_radius=12) == 12


def test_accuracy_steps_are_relions():
    rot, trans = _error_schedule("rotation"), _error_schedule("translation")
    assert list(rot[:5]) == [0.05, 0.1, 0.15, 0.2, 0.3] and rot[-1] == 35.0
    assert list(trans[:3]) == [0.1, 0.2, 0.3] and trans[-1] == 12.0


def test_near_empty_class_is_reseeded_from_the_largest(volume):
    refs = Projector(volume).project(torch.tensor(euler_to_matrix([0, 50, 90], [0, 30, 60], 0), dtype=torch.float32))
    prior = torch.tensor([0.6, 0.38, 0.02], dtype=torch.float64)
    offsets = torch.tensor([[1.0, 2.0], [0, 0], [0, 0]], dtype=torch.float64)
    dvp = torch.full((3, BOX // 2 + 1), 3.0, dtype=torch.float64)
    original = refs[0].clone()
    done = split_largest(refs, prior, offsets, dvp, torch.ones(BOX, BOX), 0.25 / 3, np.random.default_rng(0))
    assert done == [(2, 0)]
    assert torch.allclose((refs[0] + refs[2]) / 2, original, atol=1e-5)
    assert float((refs[0] - refs[2]).norm()) > 0.1 * float(original.norm())
    assert torch.allclose(prior, torch.tensor([0.31, 0.38, 0.31], dtype=torch.float64))
    assert offsets[2].tolist() == [1.0, 2.0]
