"""ResLog: the fit recovers a known B; subsets; a run on simulated particles."""

from __future__ import annotations

import numpy as np
import pytest

from cryosift.errors import InputError
from cryosift.validate import fit_reslog, fsc_curve, reslog, reslog_sizes, resolution_at, soft_sphere_mask
from cryosift.validate.reslog import ResLogFit, half_set_labels, nested_subsets
from tests.conftest import make_particle_set


def half_maps_with_b(n_particles, b_factor, box=64, pixel_size=1.0, noise_per_particle=850.0, seed=0):
    """Half maps whose spectral SNR is (N/2) exp(-B k^2 / 2) / v: signal with a B envelope plus noise.

    Both halves share a white 'structure' damped by exp(-B k^2 / 4) in amplitude (with extra
    power below 1/25 Å^-1, as a particle's low-resolution shape gives); each adds independent
    white noise of variance v / (N / 2), as averaging N / 2 particle images would.
    """
    rng = np.random.default_rng(seed)
    shape = (box, box, box)
    k = np.fft.fftfreq(box, d=pixel_size)
    kx = np.fft.rfftfreq(box, d=pixel_size)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2
    amplitude = np.exp(-b_factor * k2 / 4.0) * np.sqrt(1.0 + 30.0 * np.exp(-k2 / (2 * 0.025**2)))
    signal = np.fft.irfftn(np.fft.rfftn(rng.normal(size=shape)) * amplitude, s=shape, axes=(0, 1, 2))
    sd = np.sqrt(noise_per_particle / (n_particles / 2.0))
    return signal + sd * rng.normal(size=shape), signal + sd * rng.normal(size=shape)


@pytest.mark.parametrize("b_factor", [60.0, 150.0])
def test_fit_recovers_known_b_from_half_map_fsc(b_factor):
    sizes = [400 * 2**j for j in range(7)]
    mask = soft_sphere_mask(64)
    d = [resolution_at(fsc_curve(*half_maps_with_b(n, b_factor, seed=j), 1.0, mask), 0.143)
         for j, n in enumerate(sizes)]
    assert all(a > b for a, b in zip(d, d[1:])), d  # more particles, better resolution
    fit = fit_reslog(sizes, d, pixel_size=1.0)
    assert fit.b_factor_A2 == pytest.approx(b_factor, rel=0.15)
    assert fit.r_squared > 0.95
    assert fit.stagg_slope > 0


def test_fit_on_an_exact_line_and_nyquist_points():
    n = np.array([100, 200, 400, 800, 1600, 3200])
    b = 120.0
    inv_d2 = 0.01 + (2.0 / b) * np.log(n)
    d = 1.0 / np.sqrt(inv_d2)
    d[-1] = 2.1  # limited by Nyquist at 1 Å/px: left out
    fit = fit_reslog(n, d, pixel_size=1.0)
    assert fit.used.tolist() == [True] * 5 + [False]
    assert fit.b_factor_A2 == pytest.approx(b)
    assert fit.intercept == pytest.approx(0.01)
    assert fit.r_squared == pytest.approx(1.0)
    expected_stagg = np.polyfit(np.log(n[:5]), 1.0 / d[:5], 1)[0]
    assert fit.stagg_slope == pytest.approx(expected_stagg)
    again = ResLogFit.from_dict(fit.to_dict())
    assert again.b_factor_A2 == pytest.approx(b) and again.used.tolist() == fit.used.tolist()
    too_few = fit_reslog([100, 200], [8.0, 7.0])
    assert np.isnan(too_few.b_factor_A2) and too_few.to_dict()["b_factor_A2"] is None


def test_sizes_and_nested_subsets_within_half_sets():
    assert reslog_sizes(1000, smallest=100) == [125, 250, 500, 1000]
    halves = np.array([1, 2] * 300 + [1] * 100)  # 400 in half 1, 300 in half 2
    subsets = nested_subsets(halves, [70, 350, 700], seed=3)
    assert [len(s) for s in subsets] == [70, 350, 700]
    assert set(subsets[0]) <= set(subsets[1]) <= set(subsets[2])
    assert (halves[subsets[1]] == 1).sum() == 200 and (halves[subsets[1]] == 2).sum() == 150
    again = nested_subsets(halves, [70, 350, 700], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))
    assert not np.array_equal(nested_subsets(halves, [70], seed=4)[0], subsets[0])


def test_half_sets_from_random_subset_or_seeded_split(tmp_path):
    pset = make_particle_set(tmp_path, n=41)
    np.testing.assert_array_equal(half_set_labels(pset), pset.particles["rlnRandomSubset"])
    pset.particles = pset.particles.drop(columns="rlnRandomSubset")
    labels = half_set_labels(pset, seed=2)
    assert sorted(np.bincount(labels)[1:].tolist()) == [20, 21]
    np.testing.assert_array_equal(labels, half_set_labels(pset, seed=2))
    pset.particles["rlnRandomSubset"] = 3
    with pytest.raises(InputError, match="rlnRandomSubset"):
        half_set_labels(pset)


def test_driver_uses_the_reconstruction_per_subset(tmp_path):
    pset = make_particle_set(tmp_path, n=400, box=16, pixel_size=1.0)
    seen = []

    def fake_reconstruct(sub, symmetry, device):
        # Pretend resolution follows a known B: half maps with that spectral SNR.
        seen.append((len(sub), symmetry, sorted(set(sub.particles["rlnRandomSubset"]))))
        h1, h2 = half_maps_with_b(len(sub) * 8, 150.0, seed=len(sub))
        return h1, h2, (h1 + h2) / 2

    result = reslog(pset, sizes=[50, 100, 200, 400], symmetry="C2", reconstruct=fake_reconstruct)
    assert [s[0] for s in seen] == [50, 100, 200, 400]
    assert all(s[1] == "C2" and s[2] == [1, 2] for s in seen)
    assert result.table["particles"].tolist() == [50, 100, 200, 400]
    assert (result.table["half1"] + result.table["half2"] == result.table["particles"]).all()
    assert result.fit.b_factor_A2 == pytest.approx(150.0, rel=0.15)


@pytest.mark.slow
def test_reslog_on_simulated_particles(tmp_path):
    from cryosift.io import read_particles
    from cryosift.simulate import preset, simulate_dataset

    junk = {k: 0.0 for k in ("empty_ice", "carbon_edge", "ice_blob", "aggregate", "off_centre", "partial")}
    ds = simulate_dataset(preset("tiny", n_particles=600, snr=0.05, junk=junk), tmp_path / "sim")
    pset = read_particles(ds.particles_star)
    result = reslog(pset, sizes=[75, 150, 300, 600], seed=1)
    d = result.table["resolution_A"].to_numpy()
    assert np.all(np.isfinite(d))
    assert np.all(np.diff(d) < 0) and d[-1] < d[0] - 5.0  # more particles, finer detail
    assert np.abs(result.table["particles"].to_numpy() - [75, 150, 300, 600]).max() <= 1  # split by half set
    assert result.fit.slope > 0 and result.fit.b_factor_A2 > 0


def test_reslog_takes_one_pixel_size_per_set_as_every_step(tmp_path):
    import pandas as pd

    pset = make_particle_set(tmp_path, n=40, box=16, pixel_size=1.06)
    # Groups that differ past the 6th decimal are one pixel size (as ingest, classification, ab initio).
    second = pset.optics.iloc[[0]].assign(rlnOpticsGroup=2, rlnImagePixelSize=1.06 + 4e-7)
    pset.optics = pd.concat([pset.optics, second], ignore_index=True)
    pset.particles.loc[20:, "rlnOpticsGroup"] = 2
    seen = []

    def record(sub, symmetry, device):
        seen.append(sub)
        h1, h2 = half_maps_with_b(len(sub) * 8, 150.0, box=16, seed=len(sub))
        return h1, h2, (h1 + h2) / 2

    reslog(pset, sizes=[20, 40], reconstruct=record)
    assert len(seen) == 2
    pset.optics.loc[1, "rlnImagePixelSize"] = 1.2
    with pytest.raises(InputError, match="particles of one set have 2 pixel sizes"):
        reslog(pset, sizes=[20, 40], reconstruct=record)
