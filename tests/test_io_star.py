import numpy as np
import pandas as pd
import pytest
import starfile

from cryosift.errors import InputError
from cryosift.io.images import check_image_locations, read_particle_images
from cryosift.io.mrc import write_stack
from cryosift.io.star import (
    last_finished_iteration,
    read_class2d_model,
    read_particles_star,
    read_star,
    write_particles_star,
    write_star,
)
from tests.conftest import make_particle_set


def test_particles_31_round_trip_full_precision(tmp_path):
    pset = make_particle_set(tmp_path, n=20)
    pset.particles.loc[0, "rlnDefocusU"] = 12345.678901234567
    pset.particles.loc[1, "rlnAnglePsi"] = 1e-9
    write_particles_star(tmp_path / "p.star", pset)
    back = read_particles_star(tmp_path / "p.star")
    pd.testing.assert_frame_equal(back.particles, pset.particles, check_dtype=False, check_exact=True)
    assert back.pixel_size[0] == 2.5 and back.box == 16
    # The real starfile library reads our writer's output the same way.
    blocks = starfile.read(tmp_path / "p.star", always_dict=True)
    assert blocks["particles"]["rlnDefocusU"].iloc[0] == 12345.678901234567
    assert list(blocks) == ["optics", "particles"]


def test_relion30_file_is_upgraded(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((3, 24, 24), np.float32), 1.5)
    df = pd.DataFrame({
        "rlnImageName": [f"{i:06d}@s.mrcs" for i in (1, 2, 3)],
        "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
        "rlnDetectorPixelSize": 15.0, "rlnMagnification": 100000.0,
        "rlnDefocusU": [1e4, 2e4, 3e4], "rlnDefocusV": [1e4, 2e4, 3e4], "rlnDefocusAngle": 0.0,
        "rlnOriginX": [1.0, -2.0, 0.5], "rlnOriginY": [0.0, 3.0, -1.0],
    })
    starfile.write({"": df}, tmp_path / "old.star")
    pset = read_particles_star(tmp_path / "old.star")
    assert pset.optics["rlnImagePixelSize"].tolist() == [1.5]
    assert pset.optics["rlnImageSize"].tolist() == [24]
    np.testing.assert_allclose(pset.particles["rlnOriginXAngst"], [1.5, -3.0, 0.75])
    assert "rlnOriginX" not in pset.particles and "rlnVoltage" not in pset.particles
    assert set(pset.particles["rlnOpticsGroup"]) == {1}


def test_relion30_without_pixel_size(tmp_path):
    starfile.write({"": pd.DataFrame({"rlnImageName": ["000001@s.mrcs"], "rlnDefocusU": [1e4]})}, tmp_path / "old.star")
    with pytest.raises(InputError, match=r"old\.star: RELION 3.0 particle file without pixel size"):
        read_particles_star(tmp_path / "old.star")


def test_nan_and_inf_in_particles_are_refused(tmp_path):
    pset = make_particle_set(tmp_path, n=5)
    pset.particles.loc[2, "rlnDefocusV"] = np.inf
    pset.particles.loc[3, "rlnAnglePsi"] = np.nan
    starfile.write({"optics": pset.optics, "particles": pset.particles}, tmp_path / "p.star")
    with pytest.raises(InputError, match=r"p\.star: particles: 2 NaN or infinite values in rlnDefocusV, rlnAnglePsi"):
        read_particles_star(tmp_path / "p.star")


def test_missing_optics_fields(tmp_path):
    pset = make_particle_set(tmp_path, n=5)
    starfile.write({"optics": pset.optics.drop(columns="rlnImagePixelSize"), "particles": pset.particles}, tmp_path / "p.star")
    with pytest.raises(InputError, match="optics table has no rlnImagePixelSize"):
        read_particles_star(tmp_path / "p.star")
    parts = pset.particles.copy()
    parts.loc[0, "rlnOpticsGroup"] = 7
    starfile.write({"optics": pset.optics, "particles": parts}, tmp_path / "q.star")
    with pytest.raises(InputError, match=r"optics group\(s\) \[7\] missing from data_optics"):
        read_particles_star(tmp_path / "q.star")


def test_image_index_beyond_stack(tmp_path):
    pset = make_particle_set(tmp_path, n=5)
    pset.particles.loc[4, "rlnImageName"] = "000009@stack.mrcs"
    write_particles_star(tmp_path / "particles.star", pset)
    pset = read_particles_star(tmp_path / "particles.star")
    with pytest.raises(InputError, match=r"particles\.star: refers to image 9 of .*stack\.mrcs, which holds 5 images"):
        check_image_locations(pset)
    with pytest.raises(InputError, match=r"particles\.star: image stack .*stack\.mrcs: image index 9"):
        read_particle_images(pset)
    images = read_particle_images(pset, [0, 3])
    assert images.shape == (2, 16, 16)


def test_stack_paths_resolve_against_project_folder(tmp_path):
    project = tmp_path / "project"
    (project / "Extract" / "job003").mkdir(parents=True)
    (project / "Class2D" / "job004").mkdir(parents=True)
    write_stack(project / "Extract/job003/p.mrcs", np.ones((2, 8, 8), np.float32), 2.0)
    pset = make_particle_set(tmp_path, n=2, box=8)
    pset.particles["rlnImageName"] = ["000001@Extract/job003/p.mrcs", "000002@Extract/job003/p.mrcs"]
    write_particles_star(project / "Class2D/job004/run_it001_data.star", pset)
    again = read_particles_star(project / "Class2D/job004/run_it001_data.star")
    assert read_particle_images(again).shape == (2, 8, 8)


def _class2d_iteration(job, it, k=3, box=8, optimiser=True, classes=True):
    job.mkdir(parents=True, exist_ok=True)
    stem = f"run_it{it:03d}"
    if classes:
        write_stack(job / f"{stem}_classes.mrcs", np.zeros((k, box, box), np.float32), 4.0)
    model_classes = pd.DataFrame({
        "rlnReferenceImage": [f"{i:06d}@{job.name}/{stem}_classes.mrcs" for i in range(1, k + 1)],
        "rlnClassDistribution": [0.5, 0.5] + [0.0] * (k - 2),
        "rlnAccuracyRotations": [2.0, 3.0] + [999.0] * (k - 2),
        "rlnEstimatedResolution": [8.0, 9.5] + [np.inf] * (k - 2),
    })
    write_star(job / f"{stem}_model.star", {"model_general": {"rlnPixelSize": 4.0, "rlnNrClasses": k},
                                           "model_classes": model_classes})
    pset = make_particle_set(job, n=10, box=box, with_3d=False, classes=2)
    write_star(job / f"{stem}_data.star", {"optics": pset.optics, "particles": pset.particles})
    if optimiser:
        (job / f"{stem}_optimiser.star").write_text("data_optimiser_general\n")


def test_last_finished_iteration_skips_killed_iteration(tmp_path):
    job = tmp_path / "job010"
    _class2d_iteration(job, 1)
    _class2d_iteration(job, 2)
    _class2d_iteration(job, 3, optimiser=False)  # killed before the optimiser was written
    found = last_finished_iteration(job)
    assert found["iteration"] == 2 and found["model"].name == "run_it002_model.star"
    general, classes = read_class2d_model(found["model"])
    assert general["rlnPixelSize"] == 4.0 and np.isinf(classes["rlnEstimatedResolution"][2])


def test_relion_iteration_without_sampling_is_not_finished(tmp_path):
    # RELION writes sampling.star after data.star; --continue from an iteration without it fails.
    job = tmp_path / "job012"
    for it in (1, 2):
        _class2d_iteration(job, it)
        (job / f"run_it{it:03d}_sampling.star").write_text("data_sampling_general\n")
    _class2d_iteration(job, 3)  # killed after data.star, before sampling.star
    found = last_finished_iteration(job)
    assert found["iteration"] == 2 and found["sampling"].name == "run_it002_sampling.star"
    (job / "run_it002_sampling.star").unlink()
    (job / "run_it001_sampling.star").unlink()
    assert last_finished_iteration(job)["iteration"] == 3  # a job that writes no sampling files


def test_no_finished_iteration_message(tmp_path):
    job = tmp_path / "job011"
    _class2d_iteration(job, 1, classes=False)
    with pytest.raises(InputError, match=r"job011: no finished iteration: iteration 1 lacks classes"):
        last_finished_iteration(job)


def test_relion_nan_and_inf_in_model_star_parse(tmp_path):
    text = """
data_model_general
_rlnPixelSize 2.0

data_model_classes
loop_
_rlnReferenceImage #1
_rlnClassDistribution #2
_rlnEstimatedResolution #3
_rlnAccuracyRotations #4
000001@run_it002_classes.mrcs 0.0 inf -nan
000002@run_it002_classes.mrcs 1.0 7.5 2.1
"""
    (tmp_path / "run_it002_model.star").write_text(text)
    _, classes = read_class2d_model(tmp_path / "run_it002_model.star")
    assert np.isinf(classes["rlnEstimatedResolution"][0]) and np.isnan(classes["rlnAccuracyRotations"][0])


def test_garbage_star(tmp_path):
    (tmp_path / "x.star").write_text("data_\nloop_\n_rlnA #1\n_rlnB #2\n1 2 3 4 5\n")
    with pytest.raises(InputError, match=r"x\.star: "):
        read_particles_star(tmp_path / "x.star")
    with pytest.raises(InputError, match=r"y\.star: file not found"):
        read_star(tmp_path / "y.star")


def test_strings_with_spaces_are_quoted(tmp_path):
    write_star(tmp_path / "s.star", {"t": pd.DataFrame({"rlnMicrographName": ["a b.mrc", "c.mrc"], "rlnX": [1, 2]})})
    back = starfile.read(tmp_path / "s.star")
    assert back["rlnMicrographName"].tolist() == ["a b.mrc", "c.mrc"]
