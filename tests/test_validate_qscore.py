"""Q-scores: agreement with a plain per-atom implementation, behaviour with resolution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from cryosift.density import centring_origin, model_coordinates, model_map
from cryosift.simulate import build_pseudoprotein
from cryosift.validate import expected_qscore, qscores
from cryosift.validate.qscore import sphere_points
from tests.test_validate_support import gaussian_lowpass

BOX, APIX = 48, 1.0


@pytest.fixture(scope="module")
def model_and_map():
    st = build_pseudoprotein(10.0, seed=1).structure  # ~600 atoms with side chains
    origin = centring_origin(st, BOX, APIX)
    return st, model_map(st, BOX, APIX, origin_A=origin), origin


def plain_qscore(vol, apix, origin, xyz, atom, sigma=0.6):
    """One atom's Q the slow way: a KD-tree query per point, as the method describes."""
    tree = cKDTree(xyz)
    c = xyz[atom]

    def sample(p):
        g = (np.atleast_2d(p) - origin) / apix
        return ndimage.map_coordinates(vol, g[:, ::-1].T, order=1, mode="constant")

    d = list(sample(c)) * 8
    g = [1.0] * 8
    for radius in np.arange(1, 21) * 0.1:
        for i in range(50):
            pts = c + radius * sphere_points(8 + 2 * i)
            free = [len(tree.query_ball_point(p, 0.9 * radius)) == 0 for p in pts]
            if sum(free) >= 8:
                d += list(sample(pts[free]))
                g += [np.exp(-0.5 * (radius / sigma) ** 2)] * int(sum(free))
                break
    return np.corrcoef(d, g)[0, 1]


def test_matches_plain_implementation(model_and_map):
    st, vol, origin = model_and_map
    q = qscores(vol, APIX, st, origin_A=origin)
    xyz = model_coordinates(st)
    atoms = np.random.default_rng(0).choice(len(xyz), 25, replace=False)
    plain = [plain_qscore(vol, APIX, origin, xyz, a) for a in atoms]
    np.testing.assert_allclose(q.atoms["q"].to_numpy()[atoms], plain, atol=1e-6)


def test_noise_free_map_scores_high_and_falls_with_lowpass(model_and_map):
    st, vol, origin = model_and_map
    means = [qscores(vol, APIX, st, origin_A=origin).mean]
    for res in (3.0, 4.0, 6.0, 8.0):
        means.append(qscores(gaussian_lowpass(vol, APIX, res), APIX, st, origin_A=origin).mean)
    assert means[0] > 0.8
    assert all(a > b + 0.02 for a, b in zip(means, means[1:])), means
    assert means[-1] < 0.6


def test_noise_and_a_misplaced_model_lower_q(model_and_map):
    st, vol, origin = model_and_map
    rng = np.random.default_rng(1)
    noisy = vol + rng.normal(scale=3.0 * vol.std(), size=vol.shape).astype(np.float32)
    clean = qscores(vol, APIX, st, origin_A=origin).mean
    assert qscores(noisy, APIX, st, origin_A=origin).mean < clean - 0.1
    # The model turned 20 degrees about its centre no longer fits: Q collapses.
    xyz = model_coordinates(st)
    turned = (xyz - xyz.mean(0)) @ Rotation.from_euler("x", 20, degrees=True).as_matrix().T + xyz.mean(0)
    assert abs(qscores(vol, APIX, turned, origin_A=origin).mean) < 0.15


def test_residue_table_and_origin_handling(model_and_map):
    st, vol, origin = model_and_map
    q = qscores(vol, APIX, st, origin_A=origin)
    res = q.residues()
    assert len(res) == sum(len(ch) for ch in st[0])
    first = q.atoms[(q.atoms.chain == res.chain[0]) & (q.atoms.residue_number == res.residue_number[0])]
    assert res.q[0] == pytest.approx(first.q.mean())
    assert res.atoms[0] == len(first)
    # The same map written with another origin gives the same scores for the moved model.
    moved = qscores(vol, APIX, model_coordinates(st) + 10.0, origin_A=origin + 10.0)
    np.testing.assert_allclose(moved.atoms.q, q.atoms.q, atol=1e-9)


def test_expected_q_matches_published_fits():
    assert expected_qscore(3.0) == pytest.approx(0.580, abs=0.002)
    assert expected_qscore(8.0) == pytest.approx(0.148, abs=0.002)
    assert expected_qscore(3.0, kind="linear") == pytest.approx(0.587, abs=0.001)
    assert expected_qscore(4.0, sigma=0.4, kind="linear") == pytest.approx(0.378, abs=0.001)
    assert np.isnan(expected_qscore(np.inf))
    with pytest.raises(ValueError):
        expected_qscore(3.0, sigma=0.5)


def test_sphere_points_are_spread_on_the_unit_sphere():
    pts = sphere_points(30)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0)
    assert np.linalg.norm(pts.mean(axis=0)) < 0.05
    d, _ = cKDTree(pts).query(pts, k=2)
    assert d[:, 1].min() > 0.3  # no two points bunched together (the poles are closest)
