"""The RELION engine against the real RELION binaries (skipped, with the reason shown, where absent)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from cryosift.engines import get_engine
from cryosift.engines.relion.commands import InitialModelParams, RelionClass2DParams, class2d_command, initial_model_command
from cryosift.engines.relion.detect import RelionInstall, find_relion, parse_version
from cryosift.engines.relion.runner import job_status
from cryosift.errors import EngineError, InputError
from cryosift.io import read_class_averages, read_map
from cryosift.io.star import last_finished_iteration
from cryosift.simulate import preset, simulate_dataset

RELION = find_relion()
_skip_without_relion = pytest.mark.skipif(RELION is None, reason="RELION binaries (relion_refine) not on PATH")


def needs_relion(test):
    return pytest.mark.relion(_skip_without_relion(test))
CLASS2D = dict(classes=4, particle_diameter=110, psi_step=12, offset_range=3, offset_step=2, seed=1)


@pytest.fixture(scope="module")
def views_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("relion_sim")
    return simulate_dataset(preset("tiny", box=32, pixel_size=4.0, n_particles=300, snr=0.5, orientations="views",
                                   n_views=4, junk={}), out)


def test_version_banner_parsing():
    assert parse_version("RELION version: 3.1.3 \nPrecision: BASE=double") == (3, 1, 3)
    assert parse_version("RELION version: 5.0-beta-1-commit-abc") == (5, 0, 0)
    assert parse_version("no banner") is None


def test_commands_follow_the_installed_version(tmp_path):
    v31 = RelionInstall((3, 1, 3), "relion_refine", "relion_refine_mpi", "relion_reconstruct", "relion_preprocess", "mpirun")
    v50 = RelionInstall((5, 0, 0), "relion_refine", None, "relion_reconstruct", "relion_preprocess", None)
    em = class2d_command(v31, "p.star", tmp_path, RelionClass2DParams(classes=20, iterations=25), threads=4)
    assert "--grad" not in em and em[em.index("--K") + 1] == "20" and em[em.index("--tau2_fudge") + 1] == "2"
    assert em[em.index("--j") + 1] == "4" and em[em.index("--random_seed") + 1] == "1"
    vdam = class2d_command(v50, "p.star", tmp_path, RelionClass2DParams(iterations=200))
    assert "--grad" in vdam and "--center_classes" in vdam and vdam[vdam.index("--iter") + 1] == "200"
    with pytest.raises(ValueError, match="no VDAM"):
        class2d_command(v31, "p.star", tmp_path, RelionClass2DParams(vdam=True))
    assert "--sgd" in initial_model_command(v31, "p.star", tmp_path, InitialModelParams())
    assert "--grad" in initial_model_command(v50, "p.star", tmp_path, InitialModelParams())
    mpi = class2d_command(v31, "p.star", tmp_path, RelionClass2DParams(), mpi=3)
    assert mpi[:3] == ["mpirun", "-n", "3"] and "relion_refine_mpi" in mpi


@needs_relion
def test_classify2d_with_real_relion(views_dataset, tmp_path):
    engine = get_engine("relion", threads=2)
    result = engine.classify2d(views_dataset.particles_star, tmp_path / "Class2D", iterations=8, **CLASS2D)
    assert result.iteration == 8 and job_status(tmp_path / "Class2D") == "success"
    averages = read_class_averages(tmp_path / "Class2D")
    assert len(averages) == 4 and averages.particle_count.sum() == 300 and averages.pixel_size == 4.0
    classes = result.particles().particles["rlnClassNumber"].to_numpy()
    table = pd.crosstab(classes, views_dataset.ground_truth["view"].to_numpy())
    purity = table.max(axis=1).sum() / table.to_numpy().sum()
    assert purity >= 0.5  # four balanced views: chance is 0.25
    # A rerun of a finished job returns it as it is, without running RELION again.
    before = (tmp_path / "Class2D" / "run.log").stat().st_size
    again = engine.classify2d(views_dataset.particles_star, tmp_path / "Class2D", iterations=8, **CLASS2D)
    assert again.iteration == 8 and (tmp_path / "Class2D" / "run.log").stat().st_size == before
    # Killed after iteration 8's data.star but before its sampling.star (RELION's last file):
    # iteration 8 is not finished, and the rerun continues from iteration 7.
    (tmp_path / "Class2D" / "run_it008_sampling.star").unlink()
    (tmp_path / "Class2D" / "RELION_JOB_EXIT_SUCCESS").unlink()
    assert last_finished_iteration(tmp_path / "Class2D")["iteration"] == 7
    resumed = engine.classify2d(views_dataset.particles_star, tmp_path / "Class2D", iterations=8, **CLASS2D)
    assert resumed.iteration == 8 and job_status(tmp_path / "Class2D") == "success"
    assert "--continue" in (tmp_path / "Class2D" / "run.log").read_text()
    assert (tmp_path / "Class2D" / "run_it008_sampling.star").exists()


@needs_relion
def test_run_killed_before_its_first_sampling_file_starts_again(views_dataset, tmp_path):
    # Iteration 0 has no sampling.star, and --continue cannot do without one: with none written
    # yet the rerun starts over (same seed) instead of failing on every retry.
    job = tmp_path / "Class2D"
    engine = get_engine("relion", threads=2)
    first = read_class_averages(engine.classify2d(views_dataset.particles_star, job, iterations=1, **CLASS2D).job_dir)
    (job / "run_it001_sampling.star").unlink()
    (job / "RELION_JOB_EXIT_SUCCESS").unlink()
    again = engine.classify2d(views_dataset.particles_star, job, iterations=1, **CLASS2D)
    assert again.iteration == 1 and job_status(job) == "success"
    commands = [line for line in (job / "run.log").read_text().splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and not any("--continue" in c for c in commands)
    np.testing.assert_allclose(read_class_averages(job).images, first.images, atol=1e-6)


@needs_relion
def test_killed_run_is_not_finished_and_resumes(views_dataset, tmp_path):
    job = tmp_path / "Class2D"
    code = (f"from cryosift.engines import get_engine\n"
            f"get_engine('relion', threads=2).classify2d({str(views_dataset.particles_star)!r}, {str(job)!r}, "
            f"iterations=6, **{CLASS2D!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 240
    # sampling.star is the last file RELION writes of an iteration
    while not (job / "run_it002_sampling.star").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a file that exists may still be being written
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert job_status(job) == "unfinished"
    interrupted = last_finished_iteration(job)["iteration"]
    assert 2 <= interrupted < 6
    result = get_engine("relion", threads=2).classify2d(views_dataset.particles_star, job, iterations=6, **CLASS2D)
    assert result.iteration == 6 and job_status(job) == "success"
    assert "--continue" in (job / "run.log").read_text()


@needs_relion
def test_relion_failure_shows_its_message(views_dataset, tmp_path):
    engine = get_engine("relion", threads=1)
    with pytest.raises(EngineError) as info:
        engine.classify2d(views_dataset.particles_star, tmp_path / "bad", iterations=2,
                          **{**CLASS2D, "particle_diameter": 500})
    text = str(info.value)
    assert "relion_refine (2D classification) exited with code" in text and "ERROR" in text.upper()
    assert job_status(tmp_path / "bad") in ("failure", "unfinished")


@needs_relion
def test_reconstruct_and_short_sgd_initial_model(views_dataset, tmp_path):
    engine = get_engine("relion", threads=2)
    maps = engine.reconstruct(views_dataset.particles_star, tmp_path / "Reconstruct")
    assert maps.map == tmp_path / "Reconstruct/reconstruction.mrc"
    assert maps.half_maps == (tmp_path / "Reconstruct/reconstruction_half1.mrc",
                              tmp_path / "Reconstruct/reconstruction_half2.mrc")
    assert all(read_map(h)[0].shape == (32, 32, 32) for h in maps.half_maps)
    full, apix = read_map(maps.map)
    truth, _ = read_map(views_dataset.map_mrc)
    assert full.shape == truth.shape and apix == pytest.approx(4.0)
    assert np.corrcoef(full.ravel(), truth.ravel())[0, 1] > 0.5
    model = engine.abinit(views_dataset.particles_star, tmp_path / "InitialModel", particle_diameter=110,
                          sgd_ini_iter=4, sgd_inbetween_iter=4, sgd_fin_iter=2, sgd_ini_subset=60, sgd_fin_subset=120,
                          seed=1)
    # RELION's own files stay in InitialModel/relion; the common layout names copies of the last iteration's
    assert model.engine == "relion" and model.extra["iteration"] == 10 and model.half_maps is None
    assert model.map == tmp_path / "InitialModel/abinit.mrc"
    assert model.map.read_bytes() == (tmp_path / "InitialModel/relion/run_it010_class001.mrc").read_bytes()
    assert model.particles.read_bytes() == (tmp_path / "InitialModel/relion/run_it010_data.star").read_bytes()
    volume, apix = read_map(model.map)
    assert volume.shape == (32, 32, 32) and apix == pytest.approx(4.0)
    assert np.isfinite(volume).all() and volume.std() > 0


@pytest.mark.relion
def test_missing_micrographs_for_reextraction(views_dataset, tmp_path):
    if RELION is None:
        pytest.skip("RELION binaries (relion_refine) not on PATH")
    from cryosift.io import read_particles_star

    pset = read_particles_star(views_dataset.particles_star)
    pset.particles["rlnMicrographName"] = "Micrographs/none.mrc"
    pset.particles["rlnCoordinateX"] = 100.0
    pset.particles["rlnCoordinateY"] = 100.0
    with pytest.raises(InputError, match="micrograph Micrographs/none.mrc not found"):
        get_engine("relion").extract(pset, tmp_path / "Extract")
    assert not (tmp_path / "Extract").exists()


@needs_relion
def test_empty_particle_set_is_named_not_run(views_dataset, tmp_path):
    from cryosift.io import read_particles_star, write_particles_star

    pset = read_particles_star(views_dataset.particles_star)
    empty = tmp_path / "kept.star"
    write_particles_star(empty, pset.subset(np.arange(0)))
    with pytest.raises(InputError) as info:
        get_engine("relion", threads=1).classify2d(empty, tmp_path / "job", iterations=2, **CLASS2D)
    assert str(empty) in str(info.value) and "no particles" in str(info.value)
    assert not list((tmp_path / "job").glob("run_it*"))


@needs_relion
def test_abinit_command_with_relion_writes_the_common_layout(views_dataset, tmp_path):
    from cryosift.cli import main
    from cryosift.io import read_particles_star

    out = tmp_path / "ab"
    (out).mkdir()
    for stale in ("abinit_half1.mrc", "abinit_half2.mrc"):  # from an earlier builtin run: not RELION's
        (out / stale).write_bytes(b"old")
    assert main(["abinit", str(views_dataset.particles_star), "-o", str(out), "--engine", "relion", "--seed", "1",
                 "--iterations", "2", "2", "1", "--minibatch-initial", "60", "--minibatch-final", "120", "-j", "2"]) == 0
    from cryosift.engines.relion import last_finished_iteration_3d

    iteration, last, data = last_finished_iteration_3d(out / "relion")
    assert iteration == 5  # 2 + 2 + 1 SGD iterations, as asked
    assert (out / "abinit.mrc").read_bytes() == last.read_bytes()
    assert (out / "abinit_particles.star").read_bytes() == data.read_bytes()
    assert len(read_particles_star(out / "abinit_particles.star")) == len(read_particles_star(views_dataset.particles_star))
    assert not (out / "abinit_half1.mrc").exists() and not (out / "abinit_half2.mrc").exists()
