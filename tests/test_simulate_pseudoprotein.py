"""Pseudo-proteins: ideal geometry, mass, shapes, symmetry, and helices that read as rods at 4 Å."""

import gemmi
import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from cryosift.density import model_coordinates, model_map
from cryosift.simulate.pseudoprotein import build_pseudoprotein
from cryosift.simulate.residues import ideal_cb, sse_backbone


def _ca(st):
    return np.array([[r["CA"][0].pos.x, r["CA"][0].pos.y, r["CA"][0].pos.z] for ch in st[0] for r in ch])


def test_ideal_helix_rise_twist_radius_and_hand():
    bb = sse_backbone("helix", 18)
    ca = bb[:, 1]
    rise = np.diff(ca[:, 2])
    twist = np.degrees(np.diff(np.unwrap(np.arctan2(ca[:, 1], ca[:, 0]))))
    np.testing.assert_allclose(rise, 1.5, atol=1e-9)
    np.testing.assert_allclose(twist, 100.0, atol=1e-9)  # positive turn while rising: right-handed
    np.testing.assert_allclose(np.hypot(ca[:, 0], ca[:, 1]), 2.29, atol=0.02)
    # i -> i+4 backbone hydrogen bond O...N
    np.testing.assert_allclose(np.linalg.norm(bb[:-4, 3] - bb[4:, 0], axis=1), 2.9, atol=0.1)
    # L-amino acids in a right-handed helix: CB points outward and back toward the N-terminus
    cb = ideal_cb(bb[:, 0], ca, bb[:, 2])
    np.testing.assert_allclose(np.linalg.norm(cb - ca, axis=1), 1.53, atol=0.02)
    assert np.all(cb[:, 2] - ca[:, 2] < -0.5)
    assert np.all(np.hypot(cb[:, 0], cb[:, 1]) > np.hypot(ca[:, 0], ca[:, 1]) + 0.8)


def test_strand_rise():
    ca = sse_backbone("strand", 8)[:, 1]
    np.testing.assert_allclose(np.linalg.norm(np.diff(ca, axis=0), axis=1), 3.80, atol=0.02)
    assert 3.2 < np.mean(np.diff(ca[:, 2])) < 3.5


@pytest.mark.parametrize("mass,shape,symmetry", [(20, "globular", "C1"), (120, "multidomain", "C1"),
                                                 (90, "elongated", "C1"), (200, "globular", "C4"),
                                                 (160, "globular", "D2")])
def test_mass_shape_and_symmetry(mass, shape, symmetry):
    pp = build_pseudoprotein(mass, shape, symmetry, seed=4)
    assert abs(pp.mass_kda - mass) <= 0.10 * mass
    st = pp.structure
    xyz = model_coordinates(st)
    assert np.abs(xyz.mean(axis=0)).max() < 2.0  # centred
    ca = _ca(st)
    chains = [ch.name for ch in st[0]]
    n_sub = {"C1": 1, "C4": 4, "D2": 4}[symmetry]
    assert len(chains) == n_sub
    per = len(ca) // n_sub
    # consecutive CAs of a chain 3.8 Å apart at most; no clashes between subunits
    for k in range(n_sub):
        steps = np.linalg.norm(np.diff(ca[k * per:(k + 1) * per], axis=0), axis=1)
        assert steps.max() < 3.85
        if k:
            d, _ = cKDTree(ca[:per]).query(ca[k * per:(k + 1) * per])
            assert d.min() >= 3.9
    if symmetry == "C4":  # chain B is chain A turned 90 degrees about z (about the centre)
        centre = ca.mean(axis=0)
        rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        np.testing.assert_allclose((ca[:per] - centre) @ rz.T + centre, ca[per:2 * per], atol=1e-3)
    evals = np.sort(np.linalg.eigvalsh(np.cov((xyz - xyz.mean(0)).T)))
    if shape == "elongated":
        assert np.sqrt(evals[2] / evals[1]) > 1.8
    if shape == "multidomain":
        assert len(pp.domain_names) >= 2
    if shape == "globular" and symmetry == "C1":  # compact: radius of gyration near 2.2 N^0.38 Å
        rg = np.sqrt(np.mean(np.sum((ca - ca.mean(0)) ** 2, axis=1)))
        assert 0.8 < rg / (2.2 * len(ca) ** 0.38) < 1.3


def test_seeded_and_written_as_mmcif(tmp_path):
    a = build_pseudoprotein(40, seed=11)
    b = build_pseudoprotein(40, seed=11)
    c = build_pseudoprotein(40, seed=12)
    np.testing.assert_array_equal(model_coordinates(a.structure), model_coordinates(b.structure))
    assert len(model_coordinates(c.structure)) != len(model_coordinates(a.structure)) or \
        not np.allclose(model_coordinates(c.structure), model_coordinates(a.structure))
    path = tmp_path / "m.cif"
    a.structure.make_mmcif_document().write_file(str(path))
    back = gemmi.read_structure(str(path))
    np.testing.assert_allclose(model_coordinates(back), model_coordinates(a.structure), atol=1e-3)
    assert {r.name for ch in back[0] for r in ch} <= {"GLY", "ALA", "SER", "VAL", "THR", "LEU", "ILE", "ASN",
                                                       "ASP", "GLN", "LYS", "GLU", "ARG", "PHE"}


def _helix_profiles(pp, resolution, box=96, apix=1.0):
    """Density around each helix axis (central 70 %) at radii 0, 2.3, 6 Å, normalised to the axis."""
    origin = -np.full(3, box // 2) * apix
    vol = model_map(pp.structure, box, apix, resolution=resolution, origin_A=origin)

    def sample(pts):
        idx = (pts - origin) / apix
        return map_coordinates(vol, [idx[..., 2].ravel(), idx[..., 1].ravel(), idx[..., 0].ravel()], order=1)

    out = []
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    for a, b in pp.helix_axes:
        length = np.linalg.norm(b - a)
        if length < 15:
            continue
        u = (b - a) / length
        e1 = np.cross(u, [1.0, 0, 0] if abs(u[0]) < 0.9 else [0, 1.0, 0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(u, e1)
        t = np.linspace(0.15, 0.85, 30)[:, None, None] * length
        prof = [sample(a + t * u + r * (np.cos(ang)[None, :, None] * e1 + np.sin(ang)[None, :, None] * e2)).mean()
                for r in (0.0, 2.3, 6.0)]
        out.append(np.array(prof) / prof[0])
    return np.array(out)


def test_helices_are_rods_at_4A_and_hollow_coils_at_2A():
    pp = build_pseudoprotein(50, seed=3)
    assert len(pp.helix_axes) >= 8
    at4 = _helix_profiles(pp, 4.0)
    at2 = _helix_profiles(pp, 2.0)
    # 4 Å: the axis is the densest line of the helix (a filled rod), falling off within 6 Å
    assert np.mean(at4[:, 0] >= 0.95 * at4[:, 1]) >= 0.8
    assert np.median(at4[:, 2]) < 0.5
    # 2 Å: the backbone coil is resolved, denser than the axis (a hollow spiral, not a rod)
    assert np.mean(at2[:, 1] > 1.2 * at2[:, 0]) >= 0.8
