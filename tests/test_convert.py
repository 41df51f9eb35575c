import numpy as np
import pandas as pd
import pytest
from cryosparc.dataset import Dataset

from cryosift.errors import InputError
from cryosift.io.convert import cs_to_star, dataset_from_particles, read_particles_cs, star_to_cs
from cryosift.io.cs import read_cs, write_cs
from cryosift.io.rotations import angular_distance, euler_to_matrix, euler_to_rotvec, matrix_to_euler, rotvec_to_euler
from cryosift.io.star import read_particles_star, write_particles_star
from tests.conftest import make_particle_set


def _rodrigues_transposed(v):
    """Independent reference for the cs pose: R = I - sin(t) K + (1 - cos(t)) K^2 (i.e. Rodrigues(v)^T)."""
    t = np.linalg.norm(v)
    if t == 0:
        return np.eye(3)
    w = v / t
    k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    return np.eye(3) - np.sin(t) * k + (1 - np.cos(t)) * k @ k


@pytest.mark.parametrize("pose, euler", [
    ((0, 0, np.pi / 2), (0, 0, 90)),        # about z: tilt 0, only rot + psi defined, rot set to 0
    ((0, np.pi / 2, 0), (0, 90, 0)),        # about y: pure tilt
    ((np.pi, 0, 0), (0, 180, 180)),         # tilt 180 degenerate case
    ((0, 0, 0), (0, 0, 0)),
])
def test_known_poses(pose, euler):
    rot, tilt, psi = rotvec_to_euler(np.array([pose]))
    np.testing.assert_allclose([rot[0], tilt[0], psi[0]], euler, atol=1e-9)


def test_rotations_match_independent_formula_and_invert():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(200, 3))
    v *= (rng.uniform(0, np.pi, 200) / np.linalg.norm(v, axis=1))[:, None]
    rot, tilt, psi = rotvec_to_euler(v)
    reference = np.stack([_rodrigues_transposed(x) for x in v])
    assert angular_distance(euler_to_matrix(rot, tilt, psi), reference).max() < 1e-9
    back = euler_to_rotvec(rot, tilt, psi)
    np.testing.assert_allclose(back, v, atol=1e-9)


def test_degenerate_tilts_round_trip():
    rot = np.array([30.0, -70.0, 10.0, 0.0])
    tilt = np.array([0.0, 0.0, 180.0, 180.0])
    psi = np.array([20.0, 100.0, -45.0, 60.0])
    m = euler_to_matrix(rot, tilt, psi)
    r2, t2, p2 = matrix_to_euler(m)
    assert angular_distance(m, euler_to_matrix(r2, t2, p2)).max() < 1e-9
    assert np.all(r2 == 0) and np.all(np.isin(t2, [0, 180]))
    m3 = euler_to_matrix(*rotvec_to_euler(euler_to_rotvec(rot, tilt, psi)))
    assert angular_distance(m, m3).max() < 1e-6


def _same_particles(a, b, angles_tol_deg):
    pa, pb = a.particles, b.particles
    for label in ("rlnImageName", "rlnClassNumber", "rlnRandomSubset", "rlnOpticsGroup"):
        if label in pa:
            assert pa[label].tolist() == pb[label].tolist(), label
    for label in ("rlnDefocusU", "rlnDefocusV", "rlnOriginXAngst", "rlnOriginYAngst"):
        np.testing.assert_allclose(pb[label], pa[label], rtol=1e-12, atol=1e-12, err_msg=label)
    # Defocus angle and psi compared as angles (wrapping is allowed).
    for label in ("rlnDefocusAngle",):
        d = (pb[label] - pa[label] + 180) % 360 - 180
        assert np.abs(d).max() < 1e-9
    if "rlnAngleRot" in pa:
        m1 = euler_to_matrix(pa["rlnAngleRot"], pa["rlnAngleTilt"], pa["rlnAnglePsi"])
        m2 = euler_to_matrix(pb["rlnAngleRot"], pb["rlnAngleTilt"], pb["rlnAnglePsi"])
        assert angular_distance(m1, m2).max() < angles_tol_deg
    else:
        d = (pb["rlnAnglePsi"] - pa["rlnAnglePsi"] + 180) % 360 - 180
        assert np.abs(d).max() < angles_tol_deg
    for label in ("rlnImagePixelSize", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImageSize"):
        np.testing.assert_allclose(b.optics[label], a.optics[label], err_msg=label)


@pytest.mark.parametrize("with_3d", [True, False])
def test_star_cs_star_round_trip_exact_in_double(tmp_path, with_3d):
    pset = make_particle_set(tmp_path, n=300, with_3d=with_3d)
    if with_3d:
        pset.particles.loc[:4, "rlnAngleTilt"] = [0.0, 180.0, 0.0, 180.0, 90.0]
    write_particles_star(tmp_path / "a.star", pset)
    ds = star_to_cs(tmp_path / "a.star", tmp_path / "a.cs", double=True)
    assert ("alignments3D/pose" in ds.fields()) == with_3d and ("alignments2D/pose" in ds.fields()) != with_3d
    cs_to_star(tmp_path / "a.cs", tmp_path / "b.star")
    _same_particles(read_particles_star(tmp_path / "a.star"), read_particles_star(tmp_path / "b.star"), 1e-6)


def test_star_cs_star_in_cryosparc_float32(tmp_path):
    pset = make_particle_set(tmp_path, n=100)
    write_particles_star(tmp_path / "a.star", pset)
    ds = star_to_cs(tmp_path / "a.star", tmp_path / "a.cs")
    assert ds["alignments3D/pose"].dtype == np.float32 and ds["ctf/df1_A"].dtype == np.float32
    cs_to_star(tmp_path / "a.cs", tmp_path / "b.star")
    a, b = read_particles_star(tmp_path / "a.star").particles, read_particles_star(tmp_path / "b.star").particles
    m1 = euler_to_matrix(a["rlnAngleRot"], a["rlnAngleTilt"], a["rlnAnglePsi"])
    m2 = euler_to_matrix(b["rlnAngleRot"], b["rlnAngleTilt"], b["rlnAnglePsi"])
    assert angular_distance(m1, m2).max() < 1e-4  # float32 precision
    np.testing.assert_allclose(b["rlnDefocusU"], a["rlnDefocusU"], rtol=1e-7)


def _cryosparc_particles(n=120, seed=5):
    rng = np.random.default_rng(seed)
    ds = Dataset.allocate(n, [
        ("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)), ("blob/psize_A", "f4"),
        ("ctf/exp_group_id", "u4"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"),
        ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"), ("ctf/phase_shift_rad", "f4"),
        ("alignments3D/pose", "f4", (3,)), ("alignments3D/shift", "f4", (2,)), ("alignments3D/psize_A", "f4"),
        ("alignments3D/split", "u4"), ("alignments3D/class", "u4"),
        ("location/micrograph_path", "O"), ("location/micrograph_shape", "u4", (2,)),
        ("location/center_x_frac", "f4"), ("location/center_y_frac", "f4"),
    ])
    ds["blob/path"] = np.array([f"J3/extract/mic{i % 3}_particles.mrc" for i in range(n)], dtype=object)
    ds["blob/idx"] = np.arange(n) // 3
    ds["blob/shape"] = 64
    ds["blob/psize_A"] = 1.1
    ds["ctf/exp_group_id"] = np.arange(n) % 2
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = 300, 2.7, 0.07
    ds["ctf/df1_A"] = rng.uniform(8000, 25000, n)
    ds["ctf/df2_A"] = ds["ctf/df1_A"] - rng.uniform(0, 500, n)
    ds["ctf/df_angle_rad"] = rng.uniform(-np.pi, np.pi, n)
    v = rng.normal(size=(n, 3))
    ds["alignments3D/pose"] = v / np.linalg.norm(v, axis=1)[:, None] * rng.uniform(0, np.pi, n)[:, None]
    ds["alignments3D/shift"] = rng.normal(scale=2, size=(n, 2))
    ds["alignments3D/psize_A"] = 1.1
    ds["alignments3D/split"] = np.arange(n) % 2
    ds["alignments3D/class"] = 0
    ds["location/micrograph_path"] = np.array([f"J2/motion/mic{i % 3}.mrc" for i in range(n)], dtype=object)
    ds["location/micrograph_shape"] = [4096, 5760]
    ds["location/center_x_frac"] = rng.uniform(0, 1, n)
    ds["location/center_y_frac"] = rng.uniform(0, 1, n)
    return ds


def test_cs_star_cs_round_trip(tmp_path):
    ds = _cryosparc_particles()
    write_cs(tmp_path / "p.cs", ds)
    pset = cs_to_star(tmp_path / "p.cs", tmp_path / "p.star")
    parts = pset.particles
    # pyem's conventions
    assert parts["rlnImageName"].iloc[4] == "000002@J3/extract/mic1_particles.mrc"
    assert parts["rlnOpticsGroup"].tolist()[:3] == [1, 2, 1] and set(parts["rlnRandomSubset"]) == {1, 2}
    np.testing.assert_allclose(parts["rlnOriginXAngst"], ds["alignments3D/shift"][:, 0].astype(float) * np.float32(1.1))
    np.testing.assert_allclose(parts["rlnDefocusAngle"], np.degrees(ds["ctf/df_angle_rad"].astype(float)))
    # whole pixels; Y counted from the top edge (cryoSPARC counts it from the bottom)
    np.testing.assert_array_equal(parts["rlnCoordinateX"], np.round(ds["location/center_x_frac"].astype(float) * 5760))
    np.testing.assert_array_equal(parts["rlnCoordinateY"], np.round((1 - ds["location/center_y_frac"].astype(float)) * 4096))
    assert len(pset.optics) == 2 and pset.optics["rlnImageSize"].tolist() == [64, 64]
    back = star_to_cs(tmp_path / "p.star", tmp_path / "q.cs", micrograph_shape=(4096, 5760))
    for field in ds.fields():
        if field == "uid":
            continue
        a, b = ds[field], back[field]
        if a.dtype.kind == "f":
            if field == "alignments3D/pose":
                ma = euler_to_matrix(*rotvec_to_euler(a))
                mb = euler_to_matrix(*rotvec_to_euler(b))
                assert angular_distance(ma, mb).max() < 1e-4, field
            elif field.startswith("location/center_"):  # RELION coordinates are whole pixels
                size = 5760 if field.endswith("x_frac") else 4096
                assert np.abs(b - a).max() <= 0.5 / size + 1e-7, field
            else:
                np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=field)
        else:
            np.testing.assert_array_equal(b, a, err_msg=field)


def test_2d_alignments_from_cs(tmp_path):
    ds = Dataset.allocate(3, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/psize_A", "f4"), ("blob/shape", "u4", (2,)),
                              ("alignments2D/class", "u4"), ("alignments2D/pose", "f4"), ("alignments2D/shift", "f4", (2,)),
                              ("alignments2D/class_posterior", "f4")])
    ds["blob/path"] = np.full(3, "s.mrc", dtype=object)
    ds["blob/idx"] = [0, 1, 2]
    ds["blob/psize_A"] = 2.0
    ds["blob/shape"] = 32
    ds["alignments2D/class"] = [0, 4, 2]
    ds["alignments2D/pose"] = [0.0, np.pi / 2, -np.pi / 4]
    ds["alignments2D/shift"] = [[1, 0], [0, -1], [0.5, 0.5]]
    ds["alignments2D/class_posterior"] = [1.0, 0.5, 0.25]
    write_cs(tmp_path / "c.cs", ds)
    parts = read_particles_cs(tmp_path / "c.cs").particles
    assert parts["rlnClassNumber"].tolist() == [1, 5, 3]
    np.testing.assert_allclose(parts["rlnAnglePsi"], [0, 90, -45], atol=1e-5)
    np.testing.assert_allclose(parts["rlnOriginXAngst"], [2, 0, 1])
    np.testing.assert_allclose(parts["rlnOriginYAngst"], [0, -2, 1])
    assert "rlnAngleRot" not in parts


def test_star2cs_needs_ctf(tmp_path):
    pset = make_particle_set(tmp_path, n=5)
    pset.particles = pset.particles.drop(columns=["rlnDefocusV"])
    write_particles_star(tmp_path / "noctf.star", pset)
    with pytest.raises(InputError, match=r"noctf\.star: missing rlnDefocusV \(needed for a cryoSPARC particle file\)"):
        star_to_cs(tmp_path / "noctf.star", tmp_path / "x.cs")
    assert not (tmp_path / "x.cs").exists()


def test_cs_without_blob_fields(tmp_path):
    ds = Dataset.allocate(2, [("ctf/df1_A", "f4")])
    write_cs(tmp_path / "ctfonly.cs", ds)
    with pytest.raises(InputError, match=r"ctfonly\.cs: missing blob/path, blob/idx, blob/psize_A: not a particle \.cs file"):
        cs_to_star(tmp_path / "ctfonly.cs", tmp_path / "x.star")
    assert not (tmp_path / "x.star").exists()


def test_mixed_exposure_group(tmp_path):
    ds = _cryosparc_particles(n=4)
    ds["blob/psize_A"] = [1.1, 1.2, 1.1, 1.2]
    ds["ctf/exp_group_id"] = 0
    write_cs(tmp_path / "mixed.cs", ds)
    with pytest.raises(InputError, match="exposure group 0 mixes different"):
        read_particles_cs(tmp_path / "mixed.cs")


def test_dataset_uids_are_kept(tmp_path):
    ds = _cryosparc_particles(n=10)
    write_cs(tmp_path / "p.cs", ds)
    pset = read_particles_cs(tmp_path / "p.cs")
    np.testing.assert_array_equal(dataset_from_particles(pset)["uid"], ds["uid"])
    fresh = make_particle_set(tmp_path, n=10)
    a, b = dataset_from_particles(fresh, seed=1)["uid"], dataset_from_particles(fresh, seed=1)["uid"]
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 10
    assert isinstance(read_cs(tmp_path / "p.cs"), Dataset) and isinstance(pset.particles, pd.DataFrame)
