import numpy as np
import pytest

from cryosift.errors import InputError
from cryosift.io.classes import read_class_averages, read_relion_classes
from cryosift.io.star import read_star, write_star
from tests.test_io_star import _class2d_iteration


def test_relion_class_averages_from_job_folder(tmp_path):
    job = tmp_path / "Class2D" / "job004"
    _class2d_iteration(job, 25, k=3)
    ca = read_class_averages(job)
    assert ca.engine == "relion" and len(ca) == 3 and ca.pixel_size == 4.0
    np.testing.assert_allclose(ca.distribution, [0.5, 0.5, 0.0])
    assert ca.resolution[0] == 8.0 and np.isinf(ca.resolution[2])
    data = read_star(job / "run_it025_data.star")["particles"]
    np.testing.assert_array_equal(ca.particle_count, np.bincount(data["rlnClassNumber"] - 1, minlength=3))
    assert ca.table()["particles"].sum() == 10


def test_particles_in_class_beyond_model(tmp_path):
    job = tmp_path / "job005"
    _class2d_iteration(job, 3, k=3)
    blocks = read_star(job / "run_it003_data.star")
    blocks["particles"].loc[0, "rlnClassNumber"] = 9
    write_star(job / "run_it003_data.star", blocks)
    with pytest.raises(InputError, match=r"run_it003_data\.star: particles assigned to class 9, but run_it003_model\.star has 3 classes"):
        read_relion_classes(job / "run_it003_model.star")


def test_model_and_stack_disagree(tmp_path):
    job = tmp_path / "job006"
    _class2d_iteration(job, 3, k=3)
    blocks = read_star(job / "run_it003_model.star")
    blocks["model_classes"] = blocks["model_classes"].iloc[:2]
    write_star(job / "run_it003_model.star", blocks)
    with pytest.raises(InputError, match="iteration 3: 2 classes in model.star but 3 images"):
        read_class_averages(job)


def test_not_a_job_folder(tmp_path):
    with pytest.raises(InputError, match="neither a RELION Class2D nor a cryoSPARC 2D job folder"):
        read_class_averages(tmp_path)
