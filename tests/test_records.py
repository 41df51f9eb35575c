"""Stage records: one reader per file, errors that name the file, and no byte changed on the way."""

import json

import pytest

from cryosift.engines import makes_abinit_half_maps
from cryosift.errors import InputError
from cryosift.io.jsonfile import read_json, write_json
from cryosift.records import read_dataset, read_selection, read_summary, read_validation, write_validation


def test_one_reader_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(InputError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "cut.json").write_text('{"dataset": ')
    with pytest.raises(InputError, match="cut.json: not valid JSON"):
        read_json(tmp_path / "cut.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"list.json: expected a JSON object \(a selection"):
        read_selection(tmp_path / "list.json")


def test_each_record_checks_what_makes_it_that_file(tmp_path):
    write_json(tmp_path / "v.json", {"cutoff": 3.5})
    with pytest.raises(InputError, match="v.json: not a validation JSON file \\(no 'dataset'\\)"):
        read_validation(tmp_path / "v.json")
    write_json(tmp_path / "d.json", {"dataset": "a", "type": "simulated", "box": 64})
    with pytest.raises(InputError, match="no 'pixel_size', 'n_particles'"):
        read_dataset(tmp_path / "d.json")
    write_json(tmp_path / "s.json", {"step": "final", "particles": {"total": 3}})
    with pytest.raises(InputError, match="no 'stop' entry"):
        read_selection(tmp_path / "s.json").stop
    with pytest.raises(InputError, match="not a dataset summary \\(cryosift summarize\\) \\(no 'dataset', 'cutoffs'\\)"):
        read_summary(tmp_path / "s.json")


def test_records_keep_every_byte_and_name_what_stages_read(tmp_path):
    result = {"dataset": "apo", "cutoff": 3.5, "fsc05_model_A": 7.25, "reslog": {"b_factor_A2": 120.0}}
    write_validation(tmp_path / "validation.json", result)
    text = (tmp_path / "validation.json").read_text()
    assert text == json.dumps(result, indent=2) + "\n"
    record = read_validation(tmp_path / "validation.json")
    assert record.dataset == "apo" and record.cutoff == 3.5 and record.data == result and "reslog" in record
    write_json(tmp_path / "dataset.json", {"dataset": "apo", "type": "simulated", "box": 64, "pixel_size": 2.0,
                                           "n_particles": 900, "model": None})
    info = read_dataset(tmp_path / "dataset.json")
    assert (info.name, info.box, info.pixel_size, info.n_particles, info.model) == ("apo", 64, 2.0, 900, None)


def test_selection_groups_are_what_the_server_selects(tmp_path):
    write_json(tmp_path / "round.json", {
        "step": "round", "stop": False, "particles": {},
        "classes": {"accepted": [3, 1], "attractor": [2], "kept": [5], "rejected": [4]},
        "subsets": {"accepted": ["accepted"], "kept": ["kept", "attractor"], "rejected": ["rejected"]}})
    record = read_selection(tmp_path / "round.json")
    assert record.class_groups() == {"accepted": [1, 3], "kept": [2, 5]} and record.stop is False
    write_json(tmp_path / "final.json", {"step": "final", "particles": {},
                                         "cutoffs": {"2.5": {"classes_kept": [1]}, "3.5": {"classes_kept": [1, 2]}}})
    assert read_selection(tmp_path / "final.json").class_groups() == {"score_le_2.5": [1], "score_le_3.5": [1, 2]}


def test_which_engines_declare_ab_initio_half_maps():
    # the workflow declares abinit_half1/2.mrc as outputs (and validation inputs) only for these
    assert makes_abinit_half_maps("builtin") is True
    assert makes_abinit_half_maps("relion") is False and makes_abinit_half_maps("cryosparc") is False
    with pytest.raises(ValueError, match="unknown engine 'eman'"):
        makes_abinit_half_maps("eman")


def test_the_one_class2d_writer_reads_back_as_a_job_folder(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    from cryosift.io import read_class_averages
    from cryosift.io.class2d import write_class2d_iteration
    from cryosift.io.star import last_finished_iteration, read_star
    from tests.conftest import make_particle_set

    monkeypatch.chdir(tmp_path)
    (tmp_path / "Class2D/job3").mkdir(parents=True)
    pset = make_particle_set(tmp_path, n=12, box=16, classes=3)
    images = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    table = pd.DataFrame({"rlnClassDistribution": [0.5, 0.25, 0.25], "rlnEstimatedResolution": [8.0, 9.0, 999.0]})
    files = write_class2d_iteration("Class2D/job3", 4, images, 2.5, pset,
                                    {"rlnPixelSize": 2.5, "rlnNrClasses": 3, "rlnOriginalImageSize": 16}, table)
    classes = read_star(files["model"])["model_classes"]
    assert list(classes.columns[:2]) == ["rlnReferenceImage", "rlnClassDistribution"]
    assert list(classes["rlnReferenceImage"]) == [f"00000{i}@Class2D/job3/run_it004_classes.mrcs" for i in (1, 2, 3)]
    assert last_finished_iteration("Class2D/job3")["iteration"] == 4
    averages = read_class_averages("Class2D/job3")
    np.testing.assert_allclose(averages.images, images)
    np.testing.assert_allclose(averages.resolution, [8.0, 9.0, 999.0])
