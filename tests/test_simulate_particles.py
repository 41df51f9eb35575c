"""Particle images: line integrals, the RELION CTF, the SNR definition, junk, orientations."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from cryosift.io.rotations import euler_to_matrix
from cryosift.simulate import SimulationSpec, Simulator, draw_orientations, junk_counts, simulate_particles
from cryosift.simulate.junk import aggregate_layout
from cryosift.simulate.orientations import direction_from_angles
from cryosift.simulate.particles import projection_pad
from cryosift.simulate.renderer import ParticleRenderer, circular_mask
from cryosift.simulate.table import draw_table

BOX, APIX, SIGMA = 48, 2.0, 1.5
RNG = np.random.default_rng(0)
CENTRES = RNG.uniform(-10, 10, size=(5, 3))  # voxels from the rotation centre, (x, y, z)
AMPS = RNG.uniform(0.5, 1.5, size=5)


@pytest.fixture(scope="module")
def blobs():
    """A map of five Gaussian blobs (sigma 1.5 voxels), [z, y, x]."""
    g = np.arange(BOX) - BOX // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    vol = sum(a * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * SIGMA**2))
              for a, c in zip(AMPS, CENTRES))
    return vol.astype(np.float32)


def _line_integrals(rotations, shifts_px):
    """Exact projections of the blobs: image(x, y) = integral of V(A^T (x, y, z)) dz, moved by +shift."""
    g = np.arange(BOX) - BOX // 2
    yy, xx = np.meshgrid(g, g, indexing="ij")
    out = np.zeros((len(rotations), BOX, BOX))
    for i, (a, s) in enumerate(zip(rotations, shifts_px)):
        for amp, q in zip(AMPS, CENTRES @ a.T):
            out[i] += amp * math.sqrt(2 * math.pi) * SIGMA * np.exp(
                -((xx - q[0] - s[0]) ** 2 + (yy - q[1] - s[1]) ** 2) / (2 * SIGMA**2))
    return out


def test_projection_equals_line_integral(blobs):
    rng = np.random.default_rng(1)
    n = 24
    rot, tilt, psi = rng.uniform(-180, 180, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)
    shifts = rng.normal(scale=3.0, size=(n, 2))
    expected = _line_integrals(euler_to_matrix(rot, tilt, psi), shifts)
    # Through the simulator (no CTF, no noise) with the ground-truth table's conventions:
    # RELION origins, the particle centre at the box centre minus the origin.
    images, gt = simulate_particles(blobs, APIX, n, seed=2, snr=None, ctf=False, shift_sd_A=0.0)
    table = gt.assign(rot=rot, tilt=tilt, psi=psi, origin_x_A=-shifts[:, 0] * APIX, origin_y_A=-shifts[:, 1] * APIX)
    spec = SimulationSpec(box=BOX, pixel_size=APIX, n_particles=n)
    sim = Simulator(blobs, spec, diameter_A=BOX * APIX, apply_ctf=False)
    got = sim.signal(table).numpy()
    peak = expected.max()
    assert projection_pad(BOX) == 3
    assert np.abs(got - expected).max() < 0.01 * peak
    # The pad used above 64 px (2) is within 3 %.
    pad2 = ParticleRenderer(blobs, APIX, pad=2).project(euler_to_matrix(rot, tilt, psi), shifts).numpy()
    assert np.abs(pad2 - expected).max() < 0.03 * peak
    # simulate_particles draws its own poses; its images follow the same rule.
    exp2 = _line_integrals(euler_to_matrix(gt["rot"], gt["tilt"], gt["psi"]), np.zeros((n, 2)))
    assert np.abs(images - exp2).max() < 0.01 * peak


def _relion_ctf(kx, ky, du, dv, angle_deg, kv, cs_mm, q0, phase_deg, bfac):
    """RELION's CTF written out independently: -sin(gamma) exp(-B k^2 / 4)."""
    v = kv * 1e3
    lam = 12.2643247 / math.sqrt(v * (1 + 0.978466e-6 * v))
    k2 = kx**2 + ky**2
    df = 0.5 * (du + dv + (du - dv) * np.cos(2 * (np.arctan2(ky, kx) - math.radians(angle_deg))))
    gamma = (-math.pi * lam * df * k2 + math.pi / 2 * cs_mm * 1e7 * lam**3 * k2**2 - math.radians(phase_deg)
             - math.atan(q0 / math.sqrt(1 - q0 * q0)))
    return -np.sin(gamma) * np.exp(-bfac * k2 / 4)


def test_ctf_matches_relion_formula(blobs):
    spec = SimulationSpec(box=BOX, pixel_size=APIX, n_particles=1, voltage=200.0, spherical_aberration=1.4,
                          amplitude_contrast=0.07)
    row = pd.DataFrame({"index": [0], "label": ["true"], "variant": [-1], "rot": [30.0], "tilt": [60.0],
                        "psi": [-20.0], "origin_x_A": [1.3], "origin_y_A": [-2.1], "defocus_u_A": [14000.0],
                        "defocus_v_A": [12500.0], "defocus_angle": [35.0], "phase_shift": [20.0], "bfactor": [60.0]})
    with_ctf = Simulator(blobs, spec, BOX * APIX).signal(row).numpy()[0]
    plain = Simulator(blobs, spec, BOX * APIX, apply_ctf=False).signal(row).numpy()[0]
    f_ctf = np.fft.fft2(np.fft.ifftshift(with_ctf))
    f_plain = np.fft.fft2(np.fft.ifftshift(plain))
    k = np.fft.fftfreq(BOX, d=APIX)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    use = (np.abs(f_plain) > 1e-3 * np.abs(f_plain).max()) & (np.hypot(kx, ky) < 0.5 / APIX * 0.98)
    assert use.sum() > 500
    expected = _relion_ctf(kx[use], ky[use], 14000.0, 12500.0, 35.0, 200.0, 1.4, 0.07, 20.0, 60.0)
    ratio = f_ctf[use] / f_plain[use]
    np.testing.assert_allclose(ratio.real, expected, atol=2e-4)
    assert np.abs(ratio.imag).max() < 2e-4
    assert abs(_relion_ctf(0.0, 0.0, 1e4, 1e4, 0, 300, 2.7, 0.1, 0, 0) - 0.1) < 1e-12  # CTF(0) = +Q0


@pytest.mark.parametrize("snr", [0.05, 1.0])
def test_snr_is_met(blobs, snr):
    n = 1200  # more than the 512-particle pilot: the check covers particles it never saw
    diameter = 40.0 * APIX
    images, gt, signal = simulate_particles(blobs, APIX, n, seed=5, snr=snr, diameter_A=diameter, shift_sd_A=3.0,
                                            return_signal=True, defocus_range=(5000.0, 30000.0),
                                            particles_per_micrograph=20)
    mask = circular_mask(BOX, diameter / APIX).numpy()
    per_particle = signal[:, mask].var(axis=1)
    noise_var = (images - signal).var()
    assert abs(noise_var - 1.0) < 0.01  # RELION-like normalisation: unit noise
    assert abs(per_particle.mean() / noise_var / snr - 1.0) < 0.05
    unseen = ~gt["index"].isin(Simulator.pilot(gt)["index"]).to_numpy()
    assert unseen.sum() >= 600
    assert abs(per_particle[unseen].mean() / noise_var / snr - 1.0) < 0.05
    assert per_particle.std() / per_particle.mean() > 0.1  # defocus and view do vary the signal


def test_junk_counts_are_exact():
    fr = {"empty_ice": 0.05, "carbon_edge": 0.1, "ice_blob": 0.025, "aggregate": 0.075, "off_centre": 0.15}
    counts = junk_counts(fr, 400)
    assert counts == {"empty_ice": 20, "carbon_edge": 40, "ice_blob": 10, "aggregate": 30, "off_centre": 60,
                      "partial": 0}
    odd = junk_counts({"empty_ice": 1 / 3, "aggregate": 1 / 3}, 100)  # 33.3 + 33.3 -> 67 in all
    assert sum(odd.values()) == 67 and sorted(v for v in odd.values() if v) == [33, 34]
    spec = SimulationSpec(box=BOX, pixel_size=APIX, n_particles=400, junk=fr, seed=3)
    labels = draw_table(spec)["label"].value_counts().to_dict()
    assert labels == {"true": 240, "off_centre": 60, "carbon_edge": 40, "aggregate": 30, "empty_ice": 20,
                      "ice_blob": 10}


def test_junk_images(blobs):
    fr = {"empty_ice": 0.2, "carbon_edge": 0.2, "ice_blob": 0.2, "aggregate": 0.2}
    images, gt, signal = simulate_particles(blobs, APIX, 50, seed=4, snr=0.1, junk=fr, return_signal=True,
                                            diameter_A=30 * APIX)
    power = (signal**2).mean(axis=(1, 2))
    by = pd.Series(power).groupby(gt["label"].to_numpy()).median()
    assert by["empty_ice"] < 0.1 * by["true"]  # ice alone is nearly pure noise
    assert by["carbon_edge"] > 3 * by["true"] and by["ice_blob"] > 3 * by["true"]
    assert by["aggregate"] > 1.5 * by["true"]
    assert (gt.loc[gt.label == "aggregate", "copies"] >= 3).all()
    assert ((gt.loc[gt.label.isin(["empty_ice", "carbon_edge", "ice_blob"]), "copies"]) == 0).all()


def test_aggregate_is_picked_at_the_clump_centre():
    rng = np.random.default_rng(3)
    for copies in (3, 4, 6):
        rots, pos = aggregate_layout(rng, 10.0, 80.0, -30.0, (2.0, -1.5), copies, diameter_px=20.0)
        assert rots.shape == (copies, 3, 3) and pos.shape == (copies, 2)
        assert np.allclose(pos.mean(axis=0), [2.0, -1.5])  # the pick: the clump's centre, not a particle
        assert np.allclose(rots[0], euler_to_matrix(10.0, 80.0, -30.0))
        gaps = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        for k in range(1, copies):  # each copy touches an earlier one
            assert ((gaps[k, :k] >= 0.55 * 20 - 1e-9) & (gaps[k, :k] <= 0.85 * 20 + 1e-9)).any()
    first = [np.linalg.norm(aggregate_layout(rng, 0, 0, 0, (0, 0), 4, 20.0)[1][0]) for _ in range(200)]
    assert np.median(first) > 0.25 * 20  # the first particle is seldom at the pick


def test_uniform_orientations_are_haar():
    o = draw_orientations("uniform", 20000, np.random.default_rng(0))
    v = direction_from_angles(o["rot"], o["tilt"])
    assert stats.kstest(v[:, 2], "uniform", args=(-1, 2)).pvalue > 0.01
    assert stats.kstest(o["psi"], "uniform", args=(-180, 360)).pvalue > 0.01
    mats = euler_to_matrix(o["rot"], o["tilt"], o["psi"])
    assert np.abs(mats.mean(axis=0)).max() < 0.02  # Haar measure: E[R] = 0


def test_preferred_orientation_bias():
    kappa = 8.0
    o = draw_orientations("preferred", 20000, np.random.default_rng(1), preferred_direction=(40.0, 70.0),
                          preferred_strength=kappa)
    cosang = direction_from_angles(o["rot"], o["tilt"]) @ direction_from_angles(40.0, 70.0)[0]
    assert abs(cosang.mean() - (1 / np.tanh(kappa) - 1 / kappa)) < 0.005  # von Mises-Fisher mean
    weak = draw_orientations("preferred", 5000, np.random.default_rng(1), preferred_strength=0.0)
    assert abs(np.cos(np.radians(weak["tilt"])).mean()) < 0.03


def test_distinct_views():
    o = draw_orientations("views", 600, np.random.default_rng(2), n_views=6)
    counts = np.bincount(o["view"])
    assert list(counts) == [100] * 6
    for k in range(6):
        sel = o["view"] == k
        assert np.ptp(o["rot"][sel]) < 1e-9 and np.ptp(o["tilt"][sel]) < 1e-9  # one fixed view each
        assert np.ptp(o["psi"][sel]) > 300  # in-plane angle free
    views = direction_from_angles(*np.array([[o["rot"][o["view"] == k][0], o["tilt"][o["view"] == k][0]]
                                             for k in range(6)]).T)
    cos = views @ views.T
    assert cos[~np.eye(6, dtype=bool)].max() < np.cos(np.radians(45))  # well separated
    explicit = draw_orientations("views", 10, np.random.default_rng(0), views=[[10.0, 20.0], [100.0, 90.0]])
    assert set(np.round(explicit["tilt"], 6)) == {20.0, 90.0}
    labelled = draw_orientations("uniform", 50, np.random.default_rng(0), n_views=4)
    assert labelled["view"].min() >= 0 and labelled["view"].max() <= 3


def test_renderer_batches_give_identical_images(blobs):
    r = ParticleRenderer(blobs, APIX)
    rng = np.random.default_rng(9)
    mats = euler_to_matrix(rng.uniform(0, 360, 13), rng.uniform(0, 180, 13), rng.uniform(0, 360, 13))
    whole = r.project(mats)
    parts = torch.cat([r.project(mats[:5]), r.project(mats[5:])])
    assert torch.equal(whole, parts)
