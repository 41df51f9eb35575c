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
    # A manifest missing the files it should name is one line, not a traceback.
    for record, missing in (({"empty": True}, "particles"), ({"engine": "builtin"}, "job_dir, model_star")):
        broken = tmp_path / "classification.json"
        broken.write_text(json.dumps({"format": "cryosift-classification", **record}))
        assert cli_main(["score", str(broken), "-o", str(tmp_path / "s.star")]) == 2
        assert f"{broken}: manifest lacks {missing}" in capsys.readouterr().err


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


def test_empty_pool_completes_every_later_step_with_no_particles(particles, tmp_path, capsys):
    """Every particle rejected in the loop: the final classification, scoring, split, re-extraction,
    ab initio and validation all complete and say so, instead of stopping the run."""
    import numpy as np
    import pandas as pd

    from cryosift.io import read_map, read_particles_star, write_particles_star

    full = read_particles_star(particles)
    pool = tmp_path / "pool.star"
    write_particles_star(pool, full.subset(np.arange(0)))
    final = tmp_path / "classify" / "final"
    manifest = final / "classification.json"
    assert _classify(pool, final, "--manifest", manifest) == 0
    assert read_manifest(manifest)["empty"] and not any(final.glob("run_it*"))
    # Without a manifest to record it, an empty input is still an error naming the file.
    assert _classify(pool, tmp_path / "plain") == 2
    assert f"{pool}: no particles to classify" in capsys.readouterr().err

    scores = tmp_path / "score" / "scores.star"
    assert cli_main(["score", str(manifest), "-o", str(scores), "--device", "cpu"]) == 0
    table = pd.read_csv(scores.with_suffix(".csv"))
    assert len(table) == 0 and list(table.columns[:2]) == ["class", "score"]
    assert scores.with_suffix(".png").stat().st_size > 0

    split = tmp_path / "select"
    assert cli_main(["select", "final", "--particles", str(manifest), "--scores", str(scores.with_suffix(".csv")),
                     "--cutoffs", "2.5", "3.5", "--format", "star", "-o", str(split)]) == 0
    summary = json.loads((split / "selection.json").read_text())
    assert summary["particles"]["total"] == 0 and summary["cutoffs"]["3.5"]["particles_kept"] == 0
    subset = read_particles_star(split / "score_le_3.5.star")
    assert len(subset) == 0 and subset.box == full.box

    extracted = tmp_path / "extract" / "particles.star"
    assert cli_main(["extract", str(split / "score_le_3.5.star"), "--reference", str(particles),
                     "-o", str(extracted)]) == 0
    abinit = tmp_path / "abinit"
    assert cli_main(["abinit", str(extracted), "-o", str(abinit), "--seed", "1"]) == 0
    volume, _ = read_map(abinit / "abinit.mrc")
    assert volume.shape == (full.box,) * 3 and not volume.any()
    assert cli_main(["validate", str(abinit / "abinit.mrc"), "--particles", str(abinit / "abinit_particles.star"),
                     "--no-reslog", "--total-particles", str(len(full)), "-o", str(tmp_path / "validate")]) == 0
    validation = json.loads((tmp_path / "validate" / "validation.json").read_text())
    assert validation["status"] == "no particles kept" and validation["particles_kept"] == 0
