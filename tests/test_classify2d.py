"""Builtin 2D classification end to end on simulated particles with known views and junk."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.cli import main as cli_main
from cryosift.engines import get_engine
from cryosift.engines.builtin import classify2d
from cryosift.engines.builtin.classify import iteration_rows
from cryosift.engines.builtin.params import BuiltinClass2DParams
from cryosift.errors import InputError
from cryosift.io import (
    read_class_averages,
    read_cryosparc_classes,
    read_particles_star,
    read_stack,
    write_particles,
    write_particles_star,
)
from cryosift.io.star import last_finished_iteration, read_class2d_model
from cryosift.simulate import SimulationSpec, simulate_dataset

POSE_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst")
JUNK = {"empty_ice": 0.03, "ice_blob": 0.03, "aggregate": 0.03, "off_centre": 0.03}


def _simulate(out, n, box, seed, snr=0.1, n_views=4, mass_kda=100.0):
    """A views dataset, written as freshly extracted particles (no poses, no origins)."""
    spec = SimulationSpec(orientations="views", n_views=n_views, box=box, pixel_size=3.0, n_particles=n, snr=snr,
                          mass_kda=mass_kda, junk=JUNK, seed=seed)
    ds = simulate_dataset(spec, out, device="cpu")
    pset = read_particles_star(ds.particles_star)
    pset.particles = pset.particles.drop(columns=[c for c in POSE_LABELS if c in pset.particles])
    star = out / "extracted.star"
    write_particles_star(star, pset)
    return star, ds.ground_truth


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on shared cores, waiting OpenMP threads spin and slow every element-wise step."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("views"), n=400, box=40, seed=3)


@pytest.fixture(scope="module")
def classified(views, tmp_path_factory):
    star, truth = views
    job = tmp_path_factory.mktemp("Class2D") / "job001"
    result = classify2d(star, job, classes=6, iterations=12, seed=2, device="cpu")
    return result, truth, star


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("small"), n=160, box=32, seed=5, snr=0.2, n_views=3, mass_kda=60.0)


def _within_class_psi_error(classes, psi, truth):
    """|psi - true psi| after removing each class's own rotation (circular mean), degrees."""
    true = (truth["label"] == "true").to_numpy()
    errors = []
    for k in np.unique(classes[true]):
        sel = true & (classes == k)
        d = np.exp(1j * np.radians(psi[sel] - truth["psi"].to_numpy()[sel]))
        errors.append(np.degrees(np.abs(np.angle(d * np.conj(d.mean() / abs(d.mean()))))))
    return np.concatenate(errors)


def test_views_are_separated_and_junk_gathers(classified):
    result, truth, _ = classified
    parts = result.particles().particles
    classes = parts["rlnClassNumber"].to_numpy()
    true = (truth["label"] == "true").to_numpy()
    table = pd.crosstab(classes[true], truth["view"].to_numpy()[true])
    purity = table.max(axis=1).sum() / table.to_numpy().sum()
    assert purity >= 0.95
    junk_counts = pd.Series(classes[~true]).value_counts()
    assert junk_counts.iloc[:2].sum() >= 0.5 * (~true).sum()  # half the junk or more in two classes
    err = _within_class_psi_error(classes, parts["rlnAnglePsi"].to_numpy(), truth)
    assert np.median(err) < 5.0 and np.mean(err < 10) > 0.9


def test_class_averages_read_back_with_relion_meanings(classified):
    result, _, _ = classified
    averages = read_class_averages(result.job_dir)
    assert len(averages) == 6 and averages.box == 40 and averages.pixel_size == pytest.approx(3.0)
    assert averages.distribution.sum() == pytest.approx(1.0)
    assert averages.particle_count.sum() == 400
    populated = averages.distribution > 0.05
    assert populated.sum() >= 4
    # Populated classes resolve to 6-40 Å at 3 Å/px (Nyquist 6 Å); aligned to a few degrees.
    assert np.all((averages.resolution[populated] >= 6.0) & (averages.resolution[populated] <= 40.0))
    general, table = read_class2d_model(result.model_star)
    assert general["rlnPixelSize"] == pytest.approx(3.0) and general["rlnNrClasses"] == 6
    aligned = populated & (averages.resolution < 30)  # not the junk classes
    acc = table["rlnAccuracyRotations"].to_numpy()[aligned]
    assert aligned.sum() >= 4 and np.all((acc > 0.05) & (acc < 30))
    assert np.all(table["rlnAccuracyRotations"].to_numpy()[averages.distribution < 0.01] == 999.0)


def test_cs_export_matches_the_star_files(classified):
    result, _, _ = classified
    cs = read_cryosparc_classes(result.extra["class_averages_cs"], result.extra["particles_cs"])
    star = read_class_averages(result.model_star)
    assert np.array_equal(cs.particle_count, star.particle_count)
    assert np.allclose(cs.resolution, star.resolution, rtol=1e-5)
    assert np.allclose(cs.images, star.images)


def test_killed_iteration_is_not_taken_as_finished(classified, tmp_path):
    result, _, _ = classified
    job = tmp_path / "copy"
    shutil.copytree(result.job_dir, job)
    (job / "run_it012_optimiser.star").unlink()  # as if killed while writing iteration 12
    assert last_finished_iteration(job)["iteration"] == 11


def test_same_seed_same_result_and_resume_continues_exactly(small, tmp_path):
    star, _ = small
    opts = dict(classes=3, iterations=5, seed=7, device="cpu", export=False)
    full = classify2d(star, tmp_path / "a", **opts)
    again = classify2d(star, tmp_path / "b", **opts)
    # A run killed during iteration 4: iteration 3 finished, iteration 4 half written.
    killed = tmp_path / "c"
    shutil.copytree(tmp_path / "a", killed)
    for f in [*killed.glob("run_it005_*"), killed / "RELION_JOB_EXIT_SUCCESS", killed / "run_it004_optimiser.star"]:
        f.unlink()
    assert last_finished_iteration(killed)["iteration"] == 3
    resumed = classify2d(star, killed, resume=True, **opts)
    assert resumed.iteration == 5
    ref = read_stack(full.classes_mrcs)[0]
    assert np.array_equal(ref, read_stack(again.classes_mrcs)[0])
    assert np.array_equal(ref, read_stack(resumed.classes_mrcs)[0])
    a, r = full.particles().particles, resumed.particles().particles
    for label in ("rlnClassNumber", "rlnAnglePsi", "rlnOriginXAngst", "rlnMaxValueProbDistribution"):
        assert np.array_equal(a[label].to_numpy(), r[label].to_numpy())
    other = classify2d(star, tmp_path / "d", **{**opts, "seed": 8})
    assert not np.array_equal(ref, read_stack(other.classes_mrcs)[0])


def test_resume_refuses_changed_settings(small, tmp_path):
    star, _ = small
    classify2d(star, tmp_path / "job", classes=3, iterations=1, device="cpu", export=False)
    with pytest.raises(InputError, match="different settings.*classes=3, now 4"):
        classify2d(star, tmp_path / "job", classes=4, iterations=2, resume=True, device="cpu")


def test_minibatches_and_disk_streaming(small, tmp_path):
    star, _ = small
    params = BuiltinClass2DParams(classes=3, iterations=4, minibatch=60, full_iterations=1)
    assert len(iteration_rows(params, 160, 1)) == 60 and len(iteration_rows(params, 160, 4)) == 160
    result = get_engine("builtin", device="cpu").classify2d(star, tmp_path / "mb", params=params, memory_budget=0,
                                                         export=False)
    first = read_particles_star(tmp_path / "mb" / "run_it001_data.star")
    assert len(first) == 60  # only particles seen so far are listed
    parts = result.particles().particles
    assert len(parts) == 160 and parts["rlnClassNumber"].between(1, 3).all()
    assert not (tmp_path / "mb" / ".particles_32px.npy").exists()  # the disk cache is removed at the end


def test_cryosparc_particles_are_accepted(small, tmp_path):
    star, _ = small
    cs = star.with_name("extracted.cs")
    write_particles(cs, read_particles_star(star))
    result = classify2d(cs, tmp_path / "cs", classes=2, iterations=1, device="cpu", export=False)
    parts = result.particles()
    assert len(parts) == 160 and set(parts.particles["rlnClassNumber"]) <= {1, 2}
    assert np.isfinite(result.class_averages().images).all()


@pytest.mark.relion
@pytest.mark.skipif(shutil.which("relion_stack_create") is None, reason="RELION not on PATH")
def test_relion_reads_the_data_star_and_agrees_on_poses(classified, tmp_path):
    """relion_star_handler selects our classes; relion_stack_create applies our psi and origins."""
    result, _, star = classified
    averages = read_class_averages(result.job_dir)
    k = int(np.argmax(averages.particle_count)) + 1
    sel = tmp_path / "sel.star"
    subprocess.run(["relion_star_handler", "--i", str(result.data_star), "--o", str(sel), "--select",
                    "rlnClassNumber", "--minval", str(k), "--maxval", str(k)], check=True, capture_output=True)
    assert len(read_particles_star(sel)) == averages.particle_count[k - 1]
    # Image names are relative to the particles' folder, as RELION resolves them against its working folder.
    subprocess.run(["relion_stack_create", "--i", str(sel), "--o", str(tmp_path / "aligned"), "--apply_transformation"],
                   check=True, capture_output=True, cwd=star.parent)
    mean = read_stack(tmp_path / "aligned.mrcs")[0].mean(0)
    corr = [np.corrcoef(mean.ravel(), image.ravel())[0, 1] for image in averages.images]
    assert corr[k - 1] > 0.8
    assert corr[k - 1] == max(c for c, d in zip(corr, averages.distribution) if d > 0.05)


def test_command_line_runs_and_reports_bad_input(small, tmp_path, capsys):
    star, _ = small
    job = tmp_path / "cli"
    code = cli_main(["classify2d", str(star), "-o", str(job), "--classes", "2", "--iterations", "2", "--device", "cpu",
                     "-j", "1"])
    assert code == 0
    assert last_finished_iteration(job)["iteration"] == 2 and (job / "RELION_JOB_EXIT_SUCCESS").exists()
    bad = tmp_path / "bad.star"
    pset = read_particles_star(star)
    pset.particles = pset.particles.drop(columns=["rlnDefocusU"])
    write_particles_star(bad, pset)
    assert cli_main(["classify2d", str(bad), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "bad.star: missing rlnDefocusU" in err
