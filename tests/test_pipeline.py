"""Workflow glue: ingest of every source type, manifests, re-extraction mapping, dataset facts."""

import json

from pathlib import Path

import numpy as np
import pytest

from cryosift.errors import InputError
from cryosift.io import read_class_averages, read_particles_star, write_particles_star
from cryosift.pipeline.datasets import describe_source, source_box, star_box
from cryosift.pipeline.extract import map_to_unbinned
from cryosift.pipeline.ingest import ingest
from cryosift.pipeline.manifest import ClassificationRecord, class_averages_of, is_manifest, read_manifest, write_manifest
from cryosift.simulate import preset, simulate_dataset
from tests.test_io_cs import _cryosparc_2d_job
from tests.test_io_star import _class2d_iteration


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    return simulate_dataset(preset("tiny", box=32, pixel_size=4.0, n_particles=120), tmp_path_factory.mktemp("sim"))


def test_ingest_simulated(simulated, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    facts = ingest("simulated", simulated.particles_star.parent, "ingest/sim", "sim")
    assert facts["box"] == 32 and facts["pixel_size"] == 4.0 and facts["n_particles"] == 120
    assert facts["diameter_A"] == pytest.approx(simulated.info["diameter_A"]) and not facts["has_classes"]
    assert facts["model"].endswith("model.cif") and facts["truth_map"].endswith("map.mrc")
    pset = read_particles_star("ingest/sim/particles.star")
    assert len(pset) == 120 and json.loads((tmp_path / "ingest/sim/dataset.json").read_text()) == facts
    # image names resolve from the working folder, as RELION's do
    _, paths = pset.image_locations()
    assert all(p.exists() for p in paths)


def test_ingest_relion_class2d_and_cryosparc_particles(simulated, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = tmp_path / "Class2D" / "job004"
    _class2d_iteration(job, 7, k=3)
    facts = ingest("relion", str(job), "ingest/r", "r", diameter=150)
    assert facts["has_classes"] and facts["diameter_A"] == 150 and facts["n_particles"] == 10
    manifest = read_manifest("ingest/r/classification.json")
    assert manifest["iteration"] == 7 and manifest["model_star"].name == "run_it007_model.star"
    assert isinstance(manifest, ClassificationRecord) and manifest.engine == "input" and not manifest.empty
    assert len(read_class_averages(class_averages_of("ingest/r/classification.json"))) == 3
    facts = ingest("cryosparc", str(simulated.particles_cs), "ingest/c", "c")
    assert facts["n_particles"] == 120 and facts["diameter_A"] == pytest.approx(0.75 * 32 * 4.0)


def test_ingest_cryosparc_classification_becomes_class2d_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = _cryosparc_2d_job(tmp_path)
    from cryosift.io.mrc import write_stack

    write_stack(tmp_path / "J5/extract/p.mrc", np.zeros((40, 12, 12), np.float32), 1.7)
    facts = ingest("cryosparc", str(job), "ingest/cs", "cs")
    assert facts["has_classes"] and facts["box"] == 12
    averages = read_class_averages(class_averages_of("ingest/cs/classification.json"))
    # the one Class2D writer names the class averages relative to the project folder, as RELION does
    model = read_manifest("ingest/cs/classification.json").model_star
    assert "000001@ingest/cs/Class2D/run_it000_classes.mrcs" in model.read_text()
    original = read_class_averages(job)
    np.testing.assert_allclose(averages.images, original.images)
    np.testing.assert_array_equal(averages.particle_count, original.particle_count)
    np.testing.assert_allclose(averages.resolution, original.resolution, rtol=1e-6)


def test_ingest_errors(tmp_path):
    with pytest.raises(InputError, match="no dataset.json: not a simulator output folder"):
        ingest("simulated", tmp_path, tmp_path / "out", "x")
    with pytest.raises(InputError, match="source .*nothere.star not found"):
        ingest("relion", str(tmp_path / "nothere.star"), tmp_path / "out", "x")


def test_manifest_round_trip(tmp_path):
    job = tmp_path / "job"
    _class2d_iteration(job, 3, k=3)
    write_manifest(tmp_path / "m/classification.json", "builtin", job)
    assert is_manifest(tmp_path / "m/classification.json")
    record = read_manifest(tmp_path / "m/classification.json")
    assert record["data_star"] == (job / "run_it003_data.star").resolve() and record["engine"] == "builtin"
    (job / "run_it003_data.star").unlink()
    with pytest.raises(InputError, match="data_star .* no longer exists"):
        read_manifest(tmp_path / "m/classification.json")


def test_extract_maps_selection_to_unbinned(simulated, tmp_path):
    full = read_particles_star(simulated.particles_star)
    selected = full.subset([5, 2, 9])
    selected.particles["rlnClassNumber"] = [1, 2, 3]
    selected.particles["rlnParticleFigureOfMerit"] = [1.5, 2.0, 3.1]
    # as if classified on a binned copy: new image names, originals remembered
    selected.particles["rlnImageOriginalName"] = selected.particles["rlnImageName"]
    selected.particles["rlnImageName"] = [f"{i:06d}@binned.mrcs" for i in (1, 2, 3)]
    out = map_to_unbinned(selected, full)
    assert out.particles["rlnImageName"].tolist() == full.particles["rlnImageName"].iloc[[5, 2, 9]].tolist()
    np.testing.assert_array_equal(out.particles["rlnDefocusU"], full.particles["rlnDefocusU"].iloc[[5, 2, 9]])
    assert out.particles["rlnParticleFigureOfMerit"].tolist() == [1.5, 2.0, 3.1]
    stranger = full.subset([0])
    stranger.particles["rlnImageName"] = ["000999@elsewhere.mrcs"]
    with pytest.raises(InputError, match="particle 998@/.*/elsewhere.mrcs is not in the ingested set"):
        map_to_unbinned(stranger, full)
    # An engine that rewrote the stack names as absolute paths (RELION's input) selects the same images.
    absolute = full.subset([7, 1])
    index, paths = absolute.image_locations()
    absolute.particles["rlnImageName"] = [f"{i + 1:06d}@{Path(p).resolve()}" for i, p in zip(index, paths)]
    absolute.source = tmp_path / "elsewhere" / "run_it006_data.star"
    out = map_to_unbinned(absolute, full)
    assert out.particles["rlnImageName"].tolist() == full.particles["rlnImageName"].iloc[[7, 1]].tolist()


def test_dataset_facts_for_the_dag(simulated, tmp_path):
    src = describe_source("simulated", "demo")
    assert source_box(src) == 64
    assert star_box(simulated.particles_star) == 32
    write_particles_star(tmp_path / "p.star", read_particles_star(simulated.particles_star))
    assert source_box(describe_source("relion", str(tmp_path / "p.star"))) == 32
    with pytest.raises(InputError, match="dataset type 'xray' is not one of"):
        describe_source("xray", "a")
