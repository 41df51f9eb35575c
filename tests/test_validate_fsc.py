"""FSC, resolution crossings, masks and map grid operations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryosift.io.rotations import angular_distance
from cryosift.validate import (
    corrected_fsc,
    fourier_crop_volume,
    fsc_curve,
    mirror_map,
    resample_map,
    resolution_at,
    rotation_grid,
    soft_sphere_mask,
)
from cryosift.validate.fsc import shell_table
from cryosift.validate.grids import fourier_shift


def white_map(box, seed):
    return np.random.default_rng(seed).normal(size=(box, box, box)).astype(np.float32)


def filtered(volume, pixel_size, gain):
    """Multiply a map's transform by gain(|k| in 1/Å)."""
    box = volume.shape[0]
    k = np.fft.fftfreq(box, d=pixel_size)
    kx = np.fft.rfftfreq(box, d=pixel_size)
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    return np.fft.irfftn(np.fft.rfftn(volume) * gain(r), s=volume.shape, axes=(0, 1, 2))


def test_fsc_of_a_map_with_itself_is_one():
    vol = white_map(32, 0)
    curve = fsc_curve(vol, 3.0 * vol + 1.0, 2.0)  # scale and offset do not matter
    assert list(curve.columns[:4]) == ["shell", "frequency", "resolution_A", "fsc"]
    assert len(curve) == 17 and curve["resolution_A"].iloc[16] == pytest.approx(4.0)
    np.testing.assert_allclose(curve["fsc"].iloc[1:], 1.0, atol=1e-9)
    assert resolution_at(curve, 0.143) == pytest.approx(4.0)  # never crosses: Nyquist


def test_fsc_of_independent_noise_is_near_zero():
    curve = fsc_curve(white_map(48, 1), white_map(48, 2), 1.0)
    shells = curve.iloc[3:]
    # Standard error of a shell's FSC is about 1/sqrt(independent coefficients).
    bound = 4.0 / np.sqrt(shells["n_coefficients"] / 2.0)
    assert (shells["fsc"].abs() < bound).all()
    assert abs(shells["fsc"].mean()) < 0.02


def test_hard_lowpass_resolution_recovered_within_one_shell():
    box, apix, cut_shell = 64, 1.5, 12
    truth = white_map(box, 3)
    cut = cut_shell / (box * apix)
    lowpassed = filtered(truth, apix, lambda r: (r <= cut + 1e-9).astype(float))
    d = resolution_at(fsc_curve(truth, lowpassed, apix), 0.5)
    true_d = box * apix / cut_shell  # 8 Å
    assert box * apix / (cut_shell + 1) <= d <= box * apix / (cut_shell - 1)
    assert abs(d - true_d) < 0.7


def test_gaussian_lowpass_plus_noise_crossing_matches_theory():
    # FSC(truth, g*truth + noise) = g / sqrt(g^2 + s^2): 0.5 where g^2 = s^2 / 3.
    box, apix, d0, s = 64, 1.0, 4.0, 0.3
    truth = white_map(box, 4)
    noisy = filtered(truth, apix, lambda r: np.exp(-(r * d0) ** 2)) + s * white_map(box, 5)
    curve = fsc_curve(truth, noisy, apix)
    k = np.sqrt(np.log(3.0 / s**2) / (2.0 * d0**2))
    expected = 1.0 / k
    shell = box * apix * k
    one_shell = box * apix / (shell - 1) - box * apix / shell
    assert abs(resolution_at(curve, 0.5) - expected) < one_shell


def test_resolution_at_interpolates_and_handles_edges():
    table = shell_table(20, 2.0)  # frequency i / 40
    table["fsc"] = np.clip(1.0 - table["shell"] / 10.0, -1, 1)  # 0.5 exactly at shell 5
    assert resolution_at(table, 0.5) == pytest.approx(8.0)
    table["fsc"] = 1.0 - table["shell"] / 9.0  # crosses 0.5 at shell 4.5
    assert resolution_at(table, 0.5) == pytest.approx(40.0 / 4.5)
    table["fsc"] = [1.0] + [0.1] * 10
    assert resolution_at(table, 0.143) == np.inf


def test_corrected_fsc_removes_mask_correlation():
    box, apix = 48, 2.0
    rng = np.random.default_rng(6)
    shared = filtered(white_map(box, 7), apix, lambda r: (r < 1 / 16).astype(float)) * 4.0
    half1 = shared + 0.3 * rng.normal(size=shared.shape)
    half2 = shared + 0.3 * rng.normal(size=shared.shape)
    hard = (soft_sphere_mask(box, 12, 0) > 0.5).astype(np.float32)  # a sharp mask leaks low-resolution power
    table = corrected_fsc(half1, half2, apix, hard, seed=1)
    high = table["frequency"] > 1 / 8
    assert table.loc[high, "fsc_masked"].mean() > 0.1  # inflated by the mask
    assert abs(table.loc[high, "fsc"].mean()) < 0.08  # corrected back to noise level
    assert table.loc[high, "fsc"].mean() < table.loc[high, "fsc_masked"].mean() - 0.1
    assert table.loc[table["shell"] == 2, "fsc"].iloc[0] > 0.95  # signal shells untouched


def test_soft_sphere_mask_profile():
    m = soft_sphere_mask(32, radius_px=10, edge_px=4)
    c = 16
    assert m[c, c, c] == 1.0 and m[0, 0, 0] == 0.0
    assert m[c, c, c + 10] == pytest.approx(1.0)
    assert m[c, c, c + 12] == pytest.approx(0.5)
    assert m[c, c, c + 14] == pytest.approx(0.0)


@pytest.mark.parametrize("box", [32, 33])
def test_mirror_map_keeps_centre_and_inverts(box):
    vol = white_map(box, 8)
    c = box // 2
    m = mirror_map(vol)
    assert m[c, 3, 5] == vol[c, 3, 5]
    assert m[c + 2, 1, 1] == vol[c - 2, 1, 1]
    np.testing.assert_array_equal(mirror_map(m), vol)


def _blob(box, centre_xyz, width=2.0):
    ax = np.arange(box) - box // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    cx, cy, cz = centre_xyz
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * width**2))


def _peak(vol):
    box = vol.shape[0]
    z, y, x = np.unravel_index(np.argmax(vol), vol.shape)
    return np.array([x, y, z]) - box // 2


def test_fourier_crop_keeps_positions_in_angstrom():
    vol = _blob(64, (8, -4, 6), 3.0)
    small = fourier_crop_volume(vol, 32)  # pixel size doubles
    np.testing.assert_array_equal(_peak(small), [4, -2, 3])
    assert small.mean() == pytest.approx(vol.mean(), rel=1e-6)


def test_resample_and_shift_follow_the_convention():
    vol = _blob(32, (6, 0, 0))
    rz90 = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    out = resample_map(vol, rz90, shift_A=(0.0, 0.0, 4.0), pixel_size=2.0)  # x -> R x + t
    np.testing.assert_array_equal(_peak(out), [0, 6, 2])
    np.testing.assert_array_equal(_peak(fourier_shift(vol, (1, 2, -3))), [7, 2, -3])


def test_rotation_grid_covers_so3():
    grid = rotation_grid(20.0)
    assert 1800 < len(grid) < 1900
    probes = Rotation.random(300, random_state=3).as_matrix()
    nearest = [angular_distance(np.broadcast_to(p, grid.shape), grid).min() for p in probes]
    assert max(nearest) < 20.0
