"""The classify2d flags the workflow uses: manifests, reuse after the loop stopped, and
continuing a killed run only when its settings are the same."""

import json
import os

import pytest
import torch

from cryosift.cli import main as cli_main
from cryosift.pipeline.manifest import read_manifest
from cryosift.simulate import preset, simulate_dataset


@pytest.fixture(scope="module")
def particles(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ds = simulate_dataset(preset("tiny", n_particles=160), tmp_path_factory.mktemp("sim"), device="cpu")
    yield ds.particles_star
    torch.set_num_threads(before)


def _classify(star, job, *extra, iterations=2, classes=3):
    return cli_main(["classify2d", str(star), "-o", str(job), "--classes", str(classes), "--iterations",
                     str(iterations), "--device", "cpu", "-j", "1", "--seed", "4", *map(str, extra)])


def _selection(path, stop):
    path.write_text(json.dumps({"step": "round", "round": 1, "rounds": 5, "stop": stop}))
    return path


def test_manifest_names_the_last_iteration_and_reuse_after_stop(particles, tmp_path):
    r1 = tmp_path / "round1"
    assert _classify(particles, r1, "--manifest", r1 / "classification.json") == 0
    m1 = read_manifest(r1 / "classification.json")
    assert m1["iteration"] == 2 and m1["engine"] == "builtin" and m1["reused_from"] is None
    assert m1["model_star"] == (r1 / "run_it002_model.star").resolve()

    # The previous round stopped the loop: nothing is classified, the manifest names round 1's files.
    r2 = tmp_path / "round2"
    code = _classify(particles, r2, "--manifest", r2 / "classification.json", "--previous", r1 / "classification.json",
                     "--previous-selection", _selection(tmp_path / "stop.json", True))
    assert code == 0
    m2 = read_manifest(r2 / "classification.json")
    assert m2["model_star"] == m1["model_star"] and m2["data_star"] == m1["data_star"]
    assert m2["reused_from"] == str((r1 / "classification.json").resolve())
    assert not any(r2.glob("run_it*"))

    # It did not stop: round 3 classifies its own particles.
    r3 = tmp_path / "round3"
    code = _classify(particles, r3, "--manifest", r3 / "classification.json", "--previous", r1 / "classification.json",
                     "--previous-selection", _selection(tmp_path / "go.json", False))
    assert code == 0
    m3 = read_manifest(r3 / "classification.json")
    assert m3["model_star"] == (r3 / "run_it002_model.star").resolve() and m3["reused_from"] is None


def test_flag_errors_name_the_file(particles, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"step": "final"}))
    prev = tmp_path / "missing.json"
    assert _classify(particles, tmp_path / "j", "--previous", prev) == 2
    assert "--previous and --previous-selection go together" in capsys.readouterr().err
    assert _classify(particles, tmp_path / "j", "--manifest", tmp_path / "m.json", "--previous", prev,
                     "--previous-selection", bad) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "no 'stop' entry" in err


def test_continue_if_same_resumes_only_identical_settings(particles, tmp_path):
    job = tmp_path / "job"
    assert _classify(particles, job, iterations=2) == 0
    first = (job / "run_it001_model.star").stat().st_mtime_ns
    # A longer run with the same settings continues: iteration 1 is not recomputed.
    assert _classify(particles, job, "--continue-if-same", iterations=3) == 0
    assert (job / "run_it003_model.star").exists()
    assert (job / "run_it001_model.star").stat().st_mtime_ns == first
    # Other settings (K = 4): the old iterations are discarded and the run starts afresh.
    os.utime(job / "run_it001_model.star", ns=(first - 10**9, first - 10**9))
    assert _classify(particles, job, "--continue-if-same", iterations=2, classes=4) == 0
    assert not (job / "run_it003_model.star").exists()
    assert (job / "run_it001_model.star").stat().st_mtime_ns > first - 10**9
    assert read_manifest_classes(job) == 4


def read_manifest_classes(job):
    from cryosift.io.star import read_class2d_model

    _, classes = read_class2d_model(job / "run_it002_model.star")
    return len(classes)
