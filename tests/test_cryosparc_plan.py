"""The job graph printed without a server, and the settings behind it."""

from __future__ import annotations

import json

import pytest

from cryosift.engines.cryosparc import build_plan, load_settings, render_plan
from cryosift.engines.cryosparc.params import PAPER_ABINIT, SMALL_PARTICLE_2D, class2d_params
from cryosift.errors import InputError
from cryosift.selection.policy import rounds_for_box

BASE = {"project": "P3", "workspace": "W2", "run": "apof", "micrographs": ["J3.micrographs"]}


def plan(box, **config):
    source = config.pop("source", "J10.particles")
    seed = config.pop("seed_arg", None)
    return build_plan(load_settings({**BASE, **config}), box, source=source, seed=seed, dataset="apof")


def by_type(specs, type):
    return [s for s in specs if s.type == type]


def test_small_box_plan_has_five_rounds_of_small_particle_classification():
    specs = plan(150)
    classify = by_type(specs, "class_2D_new")
    assert [s.key for s in classify] == [f"apof/round{r}/classify2d" for r in range(1, 6)] + ["apof/final/classify2d"]
    assert all(s.params == SMALL_PARTICLE_2D for s in classify)
    assert [str(r) for r in classify[0].connections["particles"]] == ["J10.particles"]
    assert [str(r) for r in classify[1].connections["particles"]] == ["apof/round1/select_kept.particles_selected"]
    assert [str(r) for r in classify[-1].connections["particles"]] == [
        "apof/round5/select_kept.particles_selected", "apof/round1/select_accepted.particles_selected"]
    assert len(by_type(specs, "select_2D")) == 6 + 3 and len(by_type(specs, "snowflake")) == 6
    for cut in ("2.5", "3.5", "4.5"):
        ext = next(s for s in specs if s.key == f"apof/score_le_{cut}/extract")
        assert ext.params == {"box_size_pix": 150}
        assert [str(r) for r in ext.connections["micrographs"]] == ["J3.micrographs"]
        assert [str(r) for r in ext.connections["particles"]] == [
            f"apof/final/select_score_le_{cut}.particles_selected"]
    abinit = by_type(specs, "homo_abinit")
    assert len(abinit) == 3 and all({k: a.params[k] for k in PAPER_ABINIT} == PAPER_ABINIT for a in abinit)
    assert len({a.params["abinit_seed_init"] for a in abinit}) == 1
    assert all(a.title == f"[cryosift apof] {a.key}" for a in specs)


def test_large_box_plan_and_one_seed_for_every_cutoff():
    specs = plan(400, seed_arg=1234)
    assert [s.key for s in by_type(specs, "class_2D")] == ["apof/round1/classify2d", "apof/round2/classify2d",
                                                           "apof/final/classify2d"]
    assert all(s.params == {} for s in by_type(specs, "class_2D"))
    assert [a.params["abinit_seed_init"] for a in by_type(specs, "homo_abinit")] == [1234, 1234, 1234]
    assert [a.params["abinit_seed_init"] for a in by_type(plan(400, seed=9), "homo_abinit")] == [9, 9, 9]
    rec = by_type(specs, "homo_reconstruct")
    assert [str(r) for r in rec[0].connections["particles"]] == ["apof/score_le_2.5/abinit.particles_class_0"]
    assert not by_type(plan(400, reconstruct=False), "homo_reconstruct")


def test_plan_with_starter_job_external_selection_and_validation_jobs():
    specs = plan(256, source=None, starter_job="J12", select_method="external", classify_params={"class2D_K": 80},
                 validation_jobs=[{"key": "reslog", "type": "reslog_analysis",
                                   "connections": {"particles": "reconstruct.particles",
                                                   "volume": ["abinit.volume_class_0"]}}])
    assert specs[0].kind == "existing" and specs[0].title == "J12"
    assert [str(r) for r in specs[1].connections["passthrough"]] == ["J12.class_averages"]
    sel = [s for s in specs if "select" in s.key]
    assert sel and all(s.kind == "external" and s.type == "snowflake" for s in sel)
    assert [str(r) for r in sel[0].connections["passthrough"]] == ["J12.particles"]
    round2 = next(s for s in specs if s.key == "apof/round2/classify2d")
    assert round2.params == {"<copied from>": "J12", "class2D_K": 80}
    val = next(s for s in specs if s.key == "apof/score_le_3.5/reslog")
    assert {k: [str(r) for r in v] for k, v in val.connections.items()} == {
        "particles": ["apof/score_le_3.5/reconstruct.particles"], "volume": ["apof/score_le_3.5/abinit.volume_class_0"]}
    text = render_plan(specs)
    assert "apof/score_le_3.5/reslog: reslog_analysis" in text and "    class2D_K = 80" in text
    data = json.loads(render_plan(specs, as_json=True))
    assert data[0]["kind"] == "existing" and data[-1]["type"] == "reslog_analysis"


def test_rounds_follow_the_published_rule():
    for box, rounds in ((64, 5), (199, 5), (200, 3), (256, 3), (300, 3), (301, 2), (512, 2)):
        keys = [s.key for s in plan(box) if s.key.endswith("/classify2d")]
        assert rounds_for_box(box) == rounds and keys == [f"apof/round{r}/classify2d" for r in range(1, rounds + 1)] + [
            "apof/final/classify2d"]
    assert class2d_params(199)[0] == "class_2D_new" and class2d_params(200)[0] == "class_2D"


def test_plan_needs_a_source_and_micrographs():
    with pytest.raises(InputError, match="first particles"):
        plan(256, source=None)
    with pytest.raises(InputError, match="cryosparc.micrographs"):
        plan(256, micrographs=[])


@pytest.mark.parametrize("config, message", [
    ({"projekt": "P3"}, "unknown cryosparc setting"),
    ({"project": "3"}, "must look like P3"),
    ({"workspace": None}, "are required"),
    ({"starter_job": "12"}, "must look like J12"),
    ({"micrographs": ["J3"]}, "job output such as J12.particles"),
    ({"micrographs": ["results/mics.cs"]}, "job output such as J12.particles"),
    ({"select_method": "manual"}, "select_method must be one of"),
    ({"validation_jobs": [{"type": "x"}]}, "needs at least 'key' and 'type'"),
    ({"extraction_box": -4}, "must be positive"),
    ({"run": "two words"}, "cryosparc.run must be"),
    ({"abinit_params": [1]}, "must be a mapping"),
])
def test_settings_errors_name_the_key(config, message):
    with pytest.raises(InputError, match=message):
        load_settings({**BASE, **config}, env={})


def test_settings_from_a_workflow_config_file_and_the_environment(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("seed: 2025\nengine: cryosparc\ncryosparc:\n  project: P3\n  workspace: W2\n  lane: gpu\n"
                   "  extraction_box: 256\n  abinit_params: {abinit_symmetry: C1}\n")
    s = load_settings(cfg, env={})
    assert (s.project, s.workspace, s.lane, s.extraction_box, s.abinit_params) == ("P3", "W2", "gpu", 256,
                                                                                   {"abinit_symmetry": "C1"})
    assert s.tag == "cryosift-cryosift"
    assert s.title("ds/round1/classify2d") == "[cryosift cryosift] ds/round1/classify2d"
    s = load_settings(None, env={"CRYOSIFT_CRYOSPARC_PROJECT": "P7", "CRYOSIFT_CRYOSPARC_WORKSPACE": "W1"})
    assert (s.project, s.workspace) == ("P7", "W1")
    s = load_settings(cfg, env={}, run="again", workspace="W9")
    assert (s.run, s.workspace) == ("again", "W9")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cryosparc: [1, 2\n")
    with pytest.raises(InputError, match="not a readable configuration file"):
        load_settings(bad, env={})
