"""The workflow's plan: rounds per box, each step's inputs, arguments, early-stop reuse and empty sets."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from cryosift.errors import InputError
from cryosift.io import read_particles_star, write_particles_star
from cryosift.pipeline.manifest import write_manifest
from cryosift.pipeline.plan import (
    FINAL,
    StepAction,
    WorkflowPlan,
    classification_action,
    flags,
    name_pattern,
    step_round,
    training_numbers,
)
from tests.test_io_star import _class2d_iteration

R = "res"


def config(**over) -> dict:
    """The configuration as the schema fills it (only the keys the plan reads)."""
    cfg = {"results": R, "engine": "builtin", "device": "auto", "seed": 7,
           "selection": {"rounds": "auto", "cutoffs": [4.5, 2.5, 3.5]},
           "classify": {"classes": 50, "final_classes": 80},
           "relion": {"mpi": 1, "gpu": False, "prefix": ""}, "cryosparc": {}}
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


def row(name, type="simulated", source="demo", **cols) -> dict:
    base = {"dataset": name, "type": type, "source": source, "engine": "", "diameter": "", "model": "",
            "pixel_size": "", "rounds": ""}
    return {**base, **cols}


def spec(tmp_path, name, box):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "box": box, "pixel_size": 1.0, "mass_kda": 150.0,
                                    "n_particles": 10}))
    return str(path)


# --------------------------------------------------------------------------- rounds and box


@pytest.mark.parametrize("box, rounds", [(64, 5), (198, 5), (200, 3), (300, 3), (302, 2), (512, 2)])
def test_rounds_follow_the_extraction_box(tmp_path, box, rounds):
    plan = WorkflowPlan(config(), [row("d", source=spec(tmp_path, "d", box))], "sheet.tsv")
    assert plan["d"].box == box and plan["d"].rounds == rounds
    assert plan["d"].steps == [f"round{r}" for r in range(1, rounds + 1)] + [FINAL]


@pytest.mark.parametrize("box, rounds", [(199, 5), (301, 2)])
def test_sheet_box_wins_over_the_source(tmp_path, box, rounds):
    plan = WorkflowPlan(config(), [row("d", source=spec(tmp_path, "d", 256), box=str(box))], "sheet.tsv")
    assert plan["d"].box == box and plan["d"].rounds == rounds


def test_rounds_override_row_before_config_and_skip_the_box():
    # A job on a CryoSPARC server has no header to read the box from: given rounds, none is needed.
    cfg = config(engine="cryosparc", selection={"rounds": 4})
    plan = WorkflowPlan(cfg, [row("a", "cryosparc", "J10.particles"), row("b", "cryosparc", "J12", rounds="2")],
                        "sheet.tsv")
    assert plan["a"].rounds == 4 and plan["b"].rounds == 2
    with pytest.raises(InputError, match="sheet.tsv: a: the extraction box of J10.particles"):
        WorkflowPlan(config(engine="cryosparc"), [row("a", "cryosparc", "J10.particles")], "sheet.tsv")["a"].rounds


def test_server_box_from_the_sheet_then_the_extraction_box():
    cfg = config(engine="cryosparc", cryosparc={"extraction_box": 256})
    plan = WorkflowPlan(cfg, [row("a", "cryosparc", "J10.particles"), row("b", "cryosparc", "J12", box="320")],
                        "sheet.tsv")
    assert (plan["a"].box, plan["a"].rounds) == (256, 3) and (plan["b"].box, plan["b"].rounds) == (320, 2)
    assert plan["a"].sheet_box is None and plan["b"].sheet_box == 320


def test_sources_are_checked_against_their_engine():
    with pytest.raises(InputError, match="s.tsv: a: source J12 is a job on the CryoSPARC server: set engine cryosparc"):
        WorkflowPlan(config(), [row("a", "cryosparc", "J12")], "s.tsv")
    with pytest.raises(InputError, match="s.tsv: b: dataset type 'xray'"):
        WorkflowPlan(config(), [row("b", "xray", "x")], "s.tsv")


# --------------------------------------------------------------------------- each step's inputs


def test_local_round_wiring(tmp_path):
    plan = WorkflowPlan(config(), [row("d", source=spec(tmp_path, "d", 256))], "s.tsv")  # three rounds
    info = f"{R}/ingest/d/dataset.json"
    assert plan.classify_inputs("d", "round1") == {"info": info, "particles": f"{R}/ingest/d/particles.star"}
    assert plan.classify_inputs("d", "round3") == {
        "info": info, "particles": f"{R}/select/d/round2/kept.star",
        "previous_selection": f"{R}/select/d/round2/selection.json",
        "previous": f"{R}/classify/d/round2/classification.json"}
    assert plan.classify_inputs("d", FINAL) == {"info": info, "particles": f"{R}/pool/d/particles.star"}
    assert plan.pool_inputs("d") == [f"{R}/select/d/round{r}/accepted.star" for r in (1, 2, 3)] + [
        f"{R}/select/d/round3/kept.star"]
    assert plan.round_selections("d") == [f"{R}/select/d/round{r}/selection.json" for r in (1, 2, 3)]
    assert plan.classification("d", "round1") == f"{R}/classify/d/round1/classification.json"
    # cutoffs sorted as numbers and written as the rules' wildcards
    assert plan.validations("d") == [f"{R}/validate/d/cutoff{c}/validation.json" for c in ("2.5", "3.5", "4.5")]
    assert plan.final_outputs() == plan.validations("d") + [f"{R}/summary/d.json", f"{R}/report/comparison.csv"]
    assert plan.ingest_inputs("d") == {"simulation": f"{R}/simulate/d/dataset.json"}


def test_classified_source_is_round_one(tmp_path):
    job = tmp_path / "Class2D" / "job004"
    _class2d_iteration(job, 25, k=3, box=8)
    plan = WorkflowPlan(config(), [row("m", "relion", str(job), rounds="2")], "s.tsv")
    assert plan.classification("m", "round1") == f"{R}/ingest/m/classification.json"
    assert plan.classify_inputs("m", "round2")["previous"] == f"{R}/ingest/m/classification.json"
    assert plan.names(has_classes=True) == ["m"] and plan.names(has_classes=False) == []
    assert plan.ingest_inputs("m") == {}  # a folder: not an input Snakemake tracks


def test_server_round_wiring():
    cfg = config(engine="cryosparc", cryosparc={"extraction_box": 150})  # five rounds
    plan = WorkflowPlan(cfg, [row("sp", "cryosparc", "J2.particles", diameter="140")], "s.tsv")
    cs = f"{R}/cryosparc/sp"
    assert plan.cryosparc_particles("sp", "round1") == []
    assert plan.cryosparc_particles("sp", "round2") == [f"{cs}/round1/kept.cs"]
    assert plan.cryosparc_particles("sp", FINAL) == [f"{cs}/round5/kept.cs"] + [
        f"{cs}/round{r}/accepted.cs" for r in range(1, 6)]
    inputs = plan.cryosparc_classify_inputs("sp", "round2")
    assert inputs["settings"] == f"{R}/cryosparc/settings.json" and inputs["particles"] == [f"{cs}/round1/kept.cs"]
    assert inputs["previous"] == f"{R}/classify/sp/round1/classification.json"
    assert plan.cryosparc_classify_args("sp", "round1") == "J2.particles --classes 50 --seed 7 --diameter 140"
    assert plan.cryosparc_classify_args("sp", FINAL).startswith(f"{cs}/round5/kept.cs {cs}/round1/accepted.cs ")
    assert plan.cryosparc_classify_args("sp", FINAL).endswith(" --classes 80 --seed 7 --diameter 140")
    assert plan.names(on_server=True) == ["sp"] and plan.names(on_server=False) == []


# --------------------------------------------------------------------------- arguments and resources


def test_engine_arguments_and_resources(tmp_path):
    cfg = config(relion={"mpi": 4, "gpu": True, "prefix": "/opt/relion/bin"}, device="cpu")
    plan = WorkflowPlan(cfg, [row("b"), row("r", engine="relion")], "s.tsv")
    assert plan.engine_args("b") == "" and plan["b"].engine == "builtin" and plan["r"].engine == "relion"
    assert plan.engine_args("r") == "--mpi 4 --relion-gpu --relion-prefix /opt/relion/bin"
    assert (plan.gpus("b"), plan.mpi_ranks("b"), plan.mpi_launcher("b")) == (0, 1, "")
    assert (plan.gpus("r"), plan.mpi_ranks("r"), plan.mpi_launcher("r")) == (1, 4, "mpirun")
    assert plan.device_arg() == "--device cpu"
    plain = WorkflowPlan(config(relion={"mpi": 1}), [row("r", engine="relion")], "s.tsv")
    assert plain.engine_args("r") == "--mpi 1" and plain.mpi_launcher("r") == "" and plain.gpus("r") == 0
    assert plain.device_arg() == ""


def test_ingest_arguments(tmp_path):
    star = tmp_path / "p.star"
    star.write_text("data_\n")
    plan = WorkflowPlan(config(), [row("s", diameter="150", model="m.cif"),
                                   row("p", "relion", str(star), pixel_size="1.2")], "s.tsv")
    assert plan.ingest_args("s", f"{R}/simulate/s/dataset.json") == (
        f"--dataset s --type simulated --source {R}/simulate/s --diameter 150 --model m.cif")
    assert plan.ingest_args("p") == f"--dataset p --type relion --source {star} --pixel-size 1.2"
    assert plan.ingest_inputs("p") == {"source": str(star)}
    assert plan.simulation_args("s") == "--preset demo"
    server = WorkflowPlan(config(engine="cryosparc", cryosparc={"seed": 5}),
                          [row("sp", "cryosparc", "J12", diameter="140", box="320")], "s.tsv")
    assert server.cryosparc_ingest_args("sp") == "--dataset sp --source J12 --diameter 140"
    assert server.cryosparc_reconstruct_args("sp") == "--seed 5 --box 320"
    assert plan.__class__(config(engine="cryosparc"), [row("sp", "cryosparc", "J12")],
                          "s.tsv").cryosparc_reconstruct_args("sp") == "--seed 7"


def test_previous_and_model_arguments(tmp_path):
    inputs = SimpleNamespace(previous="a.json", previous_selection="s.json", keys=lambda: ["previous", "info"])
    assert WorkflowPlan.previous_args(inputs) == "--previous a.json --previous-selection s.json"
    assert WorkflowPlan.previous_args(SimpleNamespace(keys=lambda: ["info"])) == ""
    info = tmp_path / "dataset.json"
    info.write_text(json.dumps({"model": "/data/m.cif"}))
    assert WorkflowPlan.model_arg(str(info)) == "--model /data/m.cif"
    info.write_text(json.dumps({"model": None}))
    assert WorkflowPlan.model_arg(str(info)) == ""


def test_helpers():
    assert flags(("--a", 0), ("--b", ""), ("--c", None), ("--d", True), ("--e", False), ("--f", " x")) == "--a 0 --d --f  x"
    assert step_round("round12") == 12 and step_round(FINAL) is None
    assert name_pattern([]) == "(?!)" and name_pattern(["a.b", "c"]) == r"a\.b|c"
    assert training_numbers(3, 1, 2) == [0, 3, 4] and training_numbers(2, 5, 3) == [0, 1]


# --------------------------------------------------------------------------- at run time: reuse and empty sets


def _selection(path, stop):
    path.write_text(json.dumps({"step": "round", "stop": stop}))
    return path


def test_early_stop_reuses_the_previous_classification(tmp_path):
    job = tmp_path / "round1"
    _class2d_iteration(job, 3, k=3, box=8)
    previous = tmp_path / "round1.json"
    write_manifest(previous, "builtin", job)
    stopped, going = _selection(tmp_path / "stop.json", True), _selection(tmp_path / "go.json", False)
    particles = tmp_path / "kept.star"
    write_particles_star(particles, read_particles_star(job / "run_it003_data.star"))
    assert classification_action("m.json", previous, stopped, particles) is StepAction.REUSE
    assert classification_action("m.json", previous, going, particles) is StepAction.CLASSIFY
    assert classification_action("m.json", None, None, particles) is StepAction.CLASSIFY
    with pytest.raises(InputError, match="give --manifest"):
        classification_action(None, previous, stopped, particles)
    with pytest.raises(InputError, match="go together"):
        classification_action("m.json", previous, None, particles)
    (tmp_path / "bad.json").write_text(json.dumps({"step": "round"}))
    with pytest.raises(InputError, match="no 'stop' entry"):
        classification_action("m.json", previous, tmp_path / "bad.json", particles)


def test_empty_particle_set_is_recorded_not_classified(tmp_path):
    job = tmp_path / "round1"
    _class2d_iteration(job, 3, k=3, box=8)
    full = read_particles_star(job / "run_it003_data.star")
    empty = tmp_path / "kept.star"
    write_particles_star(empty, full.subset([]))
    going = _selection(tmp_path / "go.json", False)
    previous = tmp_path / "round1.json"
    write_manifest(previous, "builtin", job)
    assert classification_action("m.json", previous, going, empty) is StepAction.EMPTY
    assert classification_action("m.json", None, None, empty) is StepAction.EMPTY
    # without a manifest to record it in, or without particles to look at (the server), it classifies
    assert classification_action(None, None, None, empty) is StepAction.CLASSIFY
    assert classification_action("m.json", previous, going) is StepAction.CLASSIFY
    # a stopped loop wins over an empty set: the previous classification is named
    assert classification_action("m.json", previous, _selection(tmp_path / "s.json", True), empty) is StepAction.REUSE
