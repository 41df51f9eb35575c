"""Simulated datasets on disk: Foundation I/O reads them back, reruns are byte-identical, the CLI works."""

import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryosift.cli import main as cli_main
from cryosift.density import model_coordinates, read_model
from cryosift.device import pick_device
from cryosift.io import read_map, read_particles_cs, read_particles_star, read_stack
from cryosift.io.images import read_particle_images
from cryosift.simulate import load_simulated_dataset, preset, simulate_dataset
from cryosift.simulate.pseudoprotein import build_pseudoprotein

FILES = ("particles.mrcs", "particles.star", "particles.cs", "ground_truth.csv", "map.mrc", "model.cif",
         "dataset.json", "particles_binned.mrcs", "particles_binned.star")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    spec = preset("tiny", n_particles=120, binned_box=20, orientations="views", n_views=4)
    return simulate_dataset(spec, tmp_path_factory.mktemp("tiny"))


def test_outputs_read_back_through_foundation_io(tiny):
    gt = tiny.ground_truth
    n = len(gt)
    assert n == 120 and tiny.info["n_true"] == int((gt.label == "true").sum())
    assert sum(tiny.info["junk_counts"].values()) == n - tiny.info["n_true"]
    star = read_particles_star(tiny.particles_star)
    assert len(star) == n and star.box == 40 and np.allclose(star.pixel_size, 3.0)
    p = star.particles
    for label, col in [("rlnAngleRot", "rot"), ("rlnAngleTilt", "tilt"), ("rlnAnglePsi", "psi"),
                       ("rlnOriginXAngst", "origin_x_A"), ("rlnOriginYAngst", "origin_y_A"),
                       ("rlnDefocusU", "defocus_u_A"), ("rlnDefocusV", "defocus_v_A"),
                       ("rlnDefocusAngle", "defocus_angle")]:
        np.testing.assert_array_equal(p[label].to_numpy(), gt[col].to_numpy())
    assert set(p["rlnRandomSubset"]) == {1, 2} and abs(int((p["rlnRandomSubset"] == 1).sum()) - n // 2) <= 1
    assert star.optics.loc[0, "rlnVoltage"] == 300.0 and star.optics.loc[0, "rlnAmplitudeContrast"] == 0.1
    cs = read_particles_cs(tiny.particles_cs)
    c = cs.particles
    np.testing.assert_allclose(c["rlnDefocusU"], gt["defocus_u_A"], rtol=1e-6)
    np.testing.assert_allclose(c["rlnOriginXAngst"], gt["origin_x_A"], atol=1e-4)
    # Poses survive the rotation-vector round trip (float32): same rotation matrices.
    from cryosift.io.rotations import angular_distance, euler_to_matrix
    err = angular_distance(euler_to_matrix(c["rlnAngleRot"], c["rlnAngleTilt"], c["rlnAnglePsi"]),
                           euler_to_matrix(gt["rot"], gt["tilt"], gt["psi"]))
    assert err.max() < 1e-3
    np.testing.assert_array_equal(c["rlnRandomSubset"], p["rlnRandomSubset"])
    # Images: the STAR and the .cs point at the stack.
    stack, apix = read_stack(tiny.particles_mrcs)
    assert stack.shape == (n, 40, 40) and apix == 3.0
    np.testing.assert_array_equal(read_particle_images(star, [0, 7, 119]), stack[[0, 7, 119]])
    np.testing.assert_array_equal(read_particle_images(cs, [5]), stack[[5]])
    with mrcfile.open(tiny.particles_mrcs, header_only=True) as mrc:  # statistics gathered chunk by chunk
        h = mrc.header
        assert (h.dmin, h.dmax) == (stack.min(), stack.max())
        np.testing.assert_allclose([h.dmean, h.rms], [stack.mean(dtype=np.float64), stack.std(dtype=np.float64)],
                                   rtol=1e-5, atol=1e-6)
        assert mrc.get_labels()[0].startswith("cryosift")
    true = gt.label.to_numpy() == "true"
    bg = stack[true][:, :4, :].std()
    assert 0.9 < bg < 1.1  # unit noise
    # Binned copy: same particles at 20 px, twice the pixel size.
    small = read_particles_star(tiny.binned_star)
    binned, bapix = read_stack(tiny.binned_mrcs)
    assert binned.shape == (n, 20, 20) and bapix == 6.0 and np.allclose(small.pixel_size, 6.0)
    np.testing.assert_allclose(binned.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), atol=1e-4)


def test_map_model_and_views(tiny):
    vol, apix = read_map(tiny.map_mrc)
    assert vol.shape == (40, 40, 40) and apix == 3.0
    # Model in the map frame: centre of mass on voxel box // 2.
    xyz = model_coordinates(read_model(tiny.model_cif))
    np.testing.assert_allclose(xyz.mean(axis=0) / apix, 20.0, atol=0.5)
    z, y, x = np.unravel_index(np.argmax(vol), vol.shape)
    assert np.min(np.linalg.norm(xyz / apix - [x, y, z], axis=1)) < 1.5  # density peak sits on atoms
    gt = tiny.ground_truth
    true = gt[gt.label == "true"]
    assert sorted(true.view.unique()) == [0, 1, 2, 3]
    assert (true.groupby("view")[["rot", "tilt"]].nunique() == 1).all().all()
    assert (gt.loc[gt.label != "true", "view"] == -1).all()
    info = json.loads(tiny.dataset_json.read_text())
    assert info["box"] == 40 and info["pixel_size"] == 3.0 and 0 < info["diameter_A"] <= 120
    assert abs(info["mass_kda"] - 60.0) < 6.0 and info["seed"] == 1
    again = load_simulated_dataset(tiny.out_dir)
    pd.testing.assert_frame_equal(again.ground_truth, tiny.ground_truth, check_dtype=False)
    assert again.spec == tiny.spec


def test_byte_identical_reruns_and_chunking(tmp_path):
    spec = preset("tiny", n_particles=90)
    a = simulate_dataset(spec, tmp_path / "a")
    b = simulate_dataset(spec, tmp_path / "b", chunk=32)
    if pick_device().type == "cuda":
        # GPU FFTs of other batch sizes may round differently: chunking agrees to float32
        # rounding there, and a rerun with the same chunks is byte-identical.
        np.testing.assert_allclose(read_stack(b.out_dir / "particles.mrcs")[0],
                                   read_stack(a.out_dir / "particles.mrcs")[0], rtol=1e-5, atol=1e-5)
        b = simulate_dataset(spec, tmp_path / "b2")
    for name in FILES[:7]:
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name
    c = simulate_dataset(spec.replace(seed=2), tmp_path / "c")
    assert (a.out_dir / "particles.mrcs").read_bytes() != (c.out_dir / "particles.mrcs").read_bytes()
    # Changing junk fractions keeps each image's pose and CTF.
    d = simulate_dataset(spec.replace(junk={}), tmp_path / "d")
    cols = ["rot", "tilt", "psi", "defocus_u_A", "random_subset"]
    assert d.ground_truth[cols].equals(a.ground_truth[cols])
    assert (d.ground_truth.label == "true").all()


def test_user_model_with_chains(tmp_path):
    pp = build_pseudoprotein(40, symmetry="C2", seed=5)
    model = tmp_path / "dimer.cif"
    pp.structure.make_mmcif_document().write_file(str(model))
    (tmp_path / "sim.yaml").write_text("structure: dimer.cif\nbox: 48\npixel_size: 2.5\nn_particles: 40\n"
                                       "junk: {partial: 0.25}\nseed: 3\n")
    out = tmp_path / "out"
    assert cli_main(["simulate", str(out), "--config", str(tmp_path / "sim.yaml"), "--no-progress"]) == 0
    ds = load_simulated_dataset(out)
    assert ds.info["partial_variants"] == ["without chain A", "without chain B"]
    part = ds.ground_truth[ds.ground_truth.label == "partial"]
    assert len(part) == 10 and set(part.detail) <= {"without chain A", "without chain B"}
    assert abs(ds.info["mass_kda"] - pp.mass_kda) < 0.05 * pp.mass_kda


def test_cli_presets_flags_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["simulate", str(out), "--preset", "tiny", "-n", "30", "--junk", "aggregate=0.2", "--seed", "4",
                   "--no-progress", "-j", "1"])
    assert rc == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["n_particles"] == 30 and info["junk_counts"]["aggregate"] == 6 and info["seed"] == 4
    # the preset's other fractions (0.04 x 30 = 1.2 each) are kept; the total is round(0.4 x 30)
    assert sum(info["junk_counts"].values()) == 12 and info["junk_counts"]["empty_ice"] in (1, 2)
    capsys.readouterr()
    assert cli_main(["simulate", "--preset", "demo", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "n_particles: 3000" in text and "box: 64" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("boxx: 64\n")
    assert cli_main(["simulate", str(tmp_path / "x"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "unknown setting(s) boxx" in err
    bad.write_text("box: 40\npixel_size: 1.0\nmass_kda: 300\n")  # particle larger than the box
    assert cli_main(["simulate", str(tmp_path / "y"), "--config", str(bad)]) == 2
    assert "exceeds the box" in capsys.readouterr().err
    assert not (tmp_path / "y" / "particles.mrcs").exists()


@pytest.mark.relion
@pytest.mark.skipif(shutil.which("relion_reconstruct") is None, reason="needs RELION")
def test_relion_reconstructs_the_true_map(tmp_path):
    """RELION itself, given particles.star, rebuilds map.mrc: poses, origins and CTF follow its conventions."""
    ds = simulate_dataset(preset("tiny", n_particles=1000, junk={}, snr=1.0, shift_sd_A=6.0), tmp_path)
    subprocess.run(["relion_reconstruct", "--i", "particles.star", "--o", "recon.mrc", "--ctf"], cwd=tmp_path,
                   check=True, capture_output=True)
    truth, _ = read_map(ds.map_mrc)
    recon, _ = read_map(tmp_path / "recon.mrc")
    r = np.corrcoef(truth.ravel(), recon.ravel())[0, 1]
    assert r > 0.9
    assert r > np.corrcoef(truth.ravel(), recon[::-1].ravel())[0, 1] + 0.1  # the right hand
    # Origins with the opposite sign (particle at centre + origin) would blur the map.
    star = read_particles_star(ds.particles_star)
    star.particles[["rlnOriginXAngst", "rlnOriginYAngst"]] *= -1
    from cryosift.io import write_particles_star
    write_particles_star(tmp_path / "flipped.star", star)
    subprocess.run(["relion_reconstruct", "--i", "flipped.star", "--o", "flipped.mrc", "--ctf"], cwd=tmp_path,
                   check=True, capture_output=True)
    flipped, _ = read_map(tmp_path / "flipped.mrc")
    assert r > np.corrcoef(truth.ravel(), flipped.ravel())[0, 1] + 0.1
