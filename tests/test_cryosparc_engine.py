"""The cryoSPARC engine end to end against a recording fake of the adapter.

No CryoSPARC server can run here: the fake (tests/test_cryosparc_fake.py) answers the
adapter's methods with cryosparc-tools Datasets and files, and records every call, so the
job graph, parameters, selections and exports are checked as numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cryosparc.dataset import Dataset

from cryosift.engines import get_engine
from cryosift.engines.cryosparc import CryosparcEngine
from cryosift.engines.cryosparc import reconstruct as R
from cryosift.engines.cryosparc.params import PAPER_ABINIT, SMALL_PARTICLE_2D
from cryosift.errors import EngineError, InputError
from cryosift.io import read_class_averages, read_cs, read_map, read_particles_star
from cryosift.selection import apply_final, apply_round
from tests.test_cryosparc_fake import RES_RANGE, FakeAdapter, make_particles

N, BOX, APIX = 120, 64, 2.0
SCORES = [1.2, 2.0, 2.4, 3.0, 4.6, 5.0]  # classes 1..6 of every classification


def new_server(root) -> FakeAdapter:
    fake = FakeAdapter(root / "P3")
    mics = Dataset.allocate(4, [("micrograph_blob/path", "O")])
    mics["micrograph_blob/path"] = np.array([f"J1/motioncorrected/mic{i}.mrc" for i in range(4)], dtype=object)
    fake.add_job("patch_ctf_estimation_multi", {"micrographs": mics})  # J1
    fake.add_job("extract_micrographs_multi", {"particles": make_particles(N, BOX, APIX)}, {"box_size_pix": BOX})  # J2
    return fake


def make_engine(fake, **config) -> CryosparcEngine:
    base = {"project": "P3", "workspace": "W2", "run": "t", "micrographs": ["J1.micrographs"]}
    return CryosparcEngine({**base, **config}, adapter=fake)


def write_scores(path, scores=SCORES):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"class": np.arange(1, len(scores) + 1), "score": scores}).to_csv(path, index=False)
    return path


def uids(fake, job, output):
    return np.asarray(fake.outputs[(job, output)]["uid"])


# --------------------------------------------------------------------------- one whole run

CONFIG = {"extraction_box": 256, "validation_jobs": [
    {"key": "reslog", "type": "reslog_analysis", "params": {"reslog_fsc": 0.143},
     "connections": {"particles": "reconstruct.particles"}}]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Round 1, its selections, the pooled final classification, its split and two cutoff branches."""
    root = tmp_path_factory.mktemp("cryosparc")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setattr(R.secrets, "randbelow", lambda n: 41)  # the run's drawn seed becomes 42
    fake = new_server(root)
    eng = make_engine(fake, **CONFIG)
    out = {"fake": fake, "root": root}
    res = root / "results"
    r1 = eng.classify2d("J2.particles", res / "classify/ds/round1", classes=6, particle_diameter=150.0, seed=11,
                        iterations=25, tau2_fudge=2.0, psi_step=6.0)
    scores1 = write_scores(res / "score/ds/round1/scores.csv")
    out["scores_job"] = eng.write_scores(r1.job_dir, scores1)
    apply_round(r1.data_star, scores1, res / "select/ds/round1", round=1, rounds=3, formats=["star"])
    sel1 = eng.select_from_summary(r1.job_dir, res / "select/ds/round1/selection.json", res / "cs_select/ds/round1")
    final = eng.classify2d([res / "cs_select/ds/round1/kept.cs", res / "cs_select/ds/round1/accepted.cs"],
                           res / "classify/ds/final", classes=6)
    scores_f = write_scores(res / "score/ds/final/scores.csv")
    apply_final(final.data_star, scores_f, res / "select/ds/final", cutoffs=(2.5, 3.5), formats=["star"])
    self = eng.select_from_summary(final.job_dir, res / "select/ds/final/selection.json", res / "cs_select/ds/final")
    branches = {c: eng.reconstruct_selection(res / f"cs_select/ds/final/score_le_{c}.cs",
                                             res / f"reconstruct/ds/score_le_{c}") for c in ("2.5", "3.5")}
    out.update(engine=eng, r1=r1, sel1=sel1, final=final, self=self, branches=branches, res=res,
               calls=len(fake.calls), created=len(fake.made()))
    yield out
    mp.undo()


def test_first_classification_job_graph(run):
    fake, r1 = run["fake"], run["r1"]
    first = fake.made()[0][1]
    assert first["type"] == "class_2D"  # 256 px extraction box
    assert first["params"] == {"class2D_K": 6, "class2D_window_inner_A": 150.0, "random_seed": 11}
    assert first["connections"] == {"particles": [("J2", "particles")]}
    assert first["title"] == "[cryosift t] ds/round1/classify2d" and first["tags"] == ["cryosift-t"]
    assert r1.extra["job_uid"] == "J3" and r1.iteration == 20 and r1.engine == "cryosparc"


def test_classification_export_reads_back_like_any_engine(run):
    fake, r1 = run["fake"], run["r1"]
    expected = np.bincount(uids(fake, "J2", "particles") % 6, minlength=6)
    for source in (r1.job_dir, r1.extra["class_averages_cs"]):  # RELION layout, then the cryoSPARC pair
        ca = read_class_averages(source)
        assert len(ca) == 6 and ca.box == BOX and ca.pixel_size == pytest.approx(APIX)
        assert ca.particle_count.tolist() == expected.tolist()
        np.testing.assert_allclose(ca.distribution, expected / N)
        np.testing.assert_allclose(ca.resolution, np.linspace(*RES_RANGE, 6), rtol=1e-6)
        assert [float(img.max()) for img in ca.images] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    parts = r1.particles()
    assert len(parts) == N
    classes = parts.particles["rlnClassNumber"].to_numpy()
    assert classes.tolist() == (uids(fake, "J2", "particles") % 6 + 1).tolist()
    record = json.loads((r1.job_dir / "cryosparc.json").read_text())
    assert record["project_uid"] == "P3" and record["classification"] == "J3"
    assert record["jobs"]["ds/round1/classify2d"]["uid"] == "J3"
    assert record["files"]["run_it020_data.star"] == {"job": "J3", "output": "particles"}
    assert record["files"]["J3_020_class_averages.mrc"] == {"job": "J3", "output": "class_averages"}


def test_scores_are_shown_in_an_external_job_best_first(run):
    fake = run["fake"]
    saved = [c[1] for c in fake.calls if c[0] == "save_external_output"][0]
    assert saved["type"] == "template" and saved["name"] == "templates_scored" and saved["slots"] == ["blob"]
    assert saved["passthrough"] == ("J3", "class_averages") and saved["title"] == "[cryosift t] ds/round1/scores"
    avg_uids = uids(fake, "J3", "class_averages")
    assert saved["uids"] == avg_uids[np.argsort(SCORES)].tolist()  # class 1 (1.2) first ... class 6 (5.0) last
    table = saved["description"].splitlines()
    assert "| 1 | 1.200 |" in table[4] and "| 6 | 5.000 |" in table[-1]
    assert run["scores_job"].type == "snowflake"


def test_round_selection_sets_the_scored_classes_in_select_2d(run):
    fake, sel1, res = run["fake"], run["sel1"], run["res"]
    # Round 1 of the policy: <= 2.5 are classes 1, 2, 3; the best 70% (2) are accepted, 3 stays as attractor;
    # 4.6 and 5.0 (classes 5, 6) are rejected.
    kept_job, accepted_job = sel1["kept"]["job"].uid, sel1["accepted"]["job"].uid
    assert [c[1]["title"] for c in fake.made("select_2D")][:2] == ["[cryosift t] ds/round1/select_accepted",
                                                                    "[cryosift t] ds/round1/select_kept"]
    for c in fake.made("select_2D")[:2]:
        assert c[1]["connections"] == {"particles": [("J3", "particles")], "templates": [("J3", "class_averages")]}
    sets = {uid: {c[2]: c[3] for c in fake.calls if c[0] == "set_class_selected" and c[1] == uid}
            for uid in (kept_job, accepted_job)}
    # Select 2D starts with nothing selected: only the kept classes are switched on
    assert sets[kept_job] == {2: True, 3: True} and sets[accepted_job] == {0: True, 1: True}
    assert ("finish", kept_job) in fake.calls
    counts = np.bincount(uids(fake, "J2", "particles") % 6, minlength=6)
    assert sel1["kept"]["n"] == counts[2] + counts[3] and sel1["accepted"]["n"] == counts[0] + counts[1]
    kept = read_cs(res / "cs_select/ds/round1/kept.cs")
    assert set(np.unique(kept["alignments2D/class"]).tolist()) == {2, 3}
    # the server's selection holds exactly the particles the local selection wrote
    assert len(read_particles_star(res / "select/ds/round1/kept.star")) == len(kept)
    assert len(read_particles_star(res / "select/ds/round1/accepted.star")) == sel1["accepted"]["n"]


def test_final_classification_pools_the_selections(run):
    fake, sel1, final = run["fake"], run["sel1"], run["final"]
    call = [c[1] for c in fake.made("class_2D")][1]
    assert call["connections"] == {"particles": [(sel1["kept"]["job"].uid, "particles_selected"),
                                                 (sel1["accepted"]["job"].uid, "particles_selected")]}
    assert sum(final.extra["counts"]) == sel1["kept"]["n"] + sel1["accepted"]["n"]


def test_cutoff_branches_reextract_and_share_one_seed(run):
    fake, branches, self = run["fake"], run["branches"], run["self"]
    abinit = [c[1] for c in fake.made("homo_abinit")]
    assert len(abinit) == 2
    for c in abinit:
        assert {k: c["params"][k] for k in PAPER_ABINIT} == PAPER_ABINIT
        assert c["params"]["abinit_seed_init"] == 42  # drawn once, reused by the second cutoff
    extracts = [c[1] for c in fake.made("extract_micrographs_multi")]
    for cut, c in zip(("2.5", "3.5"), extracts):
        assert c["params"] == {"box_size_pix": 256}
        assert c["connections"] == {"micrographs": [("J1", "micrographs")],
                                    "particles": [(self[f"score_le_{cut}"]["job"].uid, "particles_selected")]}
    for cut, b in branches.items():
        n = self[f"score_le_{cut}"]["n"]
        assert b["extract"]["n"] == n and b["abinit"]["n"] == n and b["abinit"]["seed"] == 42
        rec = [c[1] for c in fake.made("homo_reconstruct") if c[1]["title"].endswith(f"score_le_{cut}/reconstruct")][0]
        assert rec["connections"] == {"particles": [(b["abinit"]["job"].uid, "particles_class_0")]}
        val = [c[1] for c in fake.made("reslog_analysis") if f"score_le_{cut}/" in c[1]["title"]][0]
        assert val["connections"] == {"particles": [(b["reconstruct"]["job"].uid, "particles")]}
        assert val["params"] == {"reslog_fsc": 0.143}
        volume, apix = read_map(b["abinit"]["map"])
        assert volume.shape == (12, 12, 12) and apix == pytest.approx(APIX * BOX / 256)
        assert read_map(b["reconstruct"]["half2"])[0].mean() == pytest.approx(3.0)
        star = read_particles_star(b["abinit"]["star"])
        assert len(star) == n and "rlnAngleTilt" in star.particles and "rlnRandomSubset" in star.particles
    # 2.5 keeps classes 1, 2 and 3 (2.4); 3.5 adds class 4 (3.0)
    final_classes = np.asarray(fake.outputs[(run["final"].extra["job_uid"], "particles")]["alignments2D/class"])
    counts = np.bincount(final_classes.astype(np.int64), minlength=6)
    assert self["score_le_2.5"]["n"] == counts[:3].sum() and self["score_le_3.5"]["n"] == counts[:4].sum()


def test_rerun_finds_every_job_and_makes_none(run):
    fake, res = run["fake"], run["res"]
    before = len(fake.made())
    saved_before = sum(c[0] == "save_external_output" for c in fake.calls)
    eng = make_engine(fake, **CONFIG)  # a new process would build a new engine
    r1 = eng.classify2d("J2.particles", res / "classify/ds/round1", classes=6, particle_diameter=150.0, seed=11)
    eng.write_scores(r1.job_dir, res / "score/ds/round1/scores.csv")
    sel = eng.select_from_summary(r1.job_dir, res / "select/ds/round1/selection.json", res / "cs_select/ds/round1")
    b = eng.reconstruct_selection(res / "cs_select/ds/final/score_le_3.5.cs", res / "reconstruct/ds/score_le_3.5")
    assert len(fake.made()) == before
    assert sum(c[0] == "save_external_output" for c in fake.calls) == saved_before
    assert r1.extra["job_uid"] == run["r1"].extra["job_uid"]
    assert sel["kept"]["job"].uid == run["sel1"]["kept"]["job"].uid
    assert b["abinit"]["job"].uid == run["branches"]["3.5"]["abinit"]["job"].uid


def test_a_new_cutoff_reuses_the_seed_of_the_run(run, monkeypatch):
    fake, res = run["fake"], run["res"]
    monkeypatch.setattr(R.secrets, "randbelow", lambda n: 99)
    eng = make_engine(fake, **CONFIG)
    b = eng.reconstruct_selection(res / "cs_select/ds/final/score_le_3.5.cs", res / "reconstruct/ds/again")
    assert b["abinit"]["seed"] == 42
    assert fake.made("homo_abinit")[-1][1]["params"]["abinit_seed_init"] == 42


# --------------------------------------------------------------------------- parameters by box size and starter job

def test_small_box_uses_the_small_particle_job_with_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    result = make_engine(fake).classify2d("J2.particles", tmp_path / "c/ds/r1", classes=4, highres_limit=0.0)
    call = fake.made()[0][1]
    assert call["type"] == "class_2D_new"  # box 64 read from the extraction job's box_size_pix
    assert call["params"] == {**SMALL_PARTICLE_2D, "class2D_K": 4}
    assert result.extra["job_type"] == "class_2D_new" and len(result.extra["counts"]) == 4


def test_starter_job_parameters_are_copied_and_overridable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    starter = {"class2D_K": 50, "class2D_max_res": 6, "random_seed": 7, "compute_use_ssd": False, "compute_num_gpus": 2}
    fake.add_job("class_2D", params=starter)  # J3
    eng = make_engine(fake, starter_job="J3", extraction_box=256, classify_params={"class2D_max_res": 4})
    eng.classify2d("J2.particles", tmp_path / "c/ds/r1", classes=20)
    assert fake.made()[0][1]["params"] == {"class2D_K": 20, "class2D_max_res": 4, "random_seed": 7,
                                           "compute_use_ssd": False, "compute_num_gpus": 2}
    # A small box needs the other job type: only the settings both types share are copied.
    eng = make_engine(fake, starter_job="J3", extraction_box=150, run="small")
    eng.classify2d("J2.particles", tmp_path / "c/ds/r1s")
    call = fake.made()[-1][1]
    assert call["type"] == "class_2D_new"
    assert call["params"] == {**SMALL_PARTICLE_2D, "class2D_K": 50, "class2D_max_res": 6, "random_seed": 7,
                              "compute_use_ssd": False}


def test_starter_job_is_adopted_as_round_one_without_a_new_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    eng = make_engine(fake, extraction_box=256)
    r = eng.classify2d("J2.particles", tmp_path / "user/job", classes=5)
    made = len(fake.made())
    adopted = eng.adopt(r.extra["job_uid"], tmp_path / "c/ds/round1")
    assert len(fake.made()) == made
    assert read_class_averages(adopted.job_dir).particle_count.tolist() == list(r.extra["counts"])
    with pytest.raises(InputError, match="not a 2D classification"):
        eng.adopt("J2", tmp_path / "c/ds/bad")


# --------------------------------------------------------------------------- selection through an External job

def test_external_selection_outputs_the_particle_subset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    eng = make_engine(fake, extraction_box=256, select_method="external")
    r = eng.classify2d("J2.particles", tmp_path / "c/ds/r1", classes=6)
    sel = eng.select(r.job_dir, [2, 5], tmp_path / "s/ds/r1/kept.cs", subset="kept")
    saved = [c[1] for c in fake.calls if c[0] == "save_external_output"][-1]
    assert saved["type"] == "particle" and saved["name"] == "particles_selected" and saved["slots"] == ["alignments2D"]
    assert saved["passthrough"] == (r.extra["job_uid"], "particles")
    parent = fake.outputs[(r.extra["job_uid"], "particles")]
    want = np.asarray(parent["uid"])[np.isin(np.asarray(parent["alignments2D/class"]), [1, 4])]
    assert saved["uids"] == want.tolist() and sel["n"] == len(want)
    assert not fake.made("select_2D")
    exported = read_cs(sel["cs"])
    assert set(np.unique(exported["alignments2D/class"]).tolist()) == {1, 4} and "ctf/df1_A" in exported.fields()
    again = make_engine(fake, extraction_box=256, select_method="external").select(
        r.job_dir, [2, 5], tmp_path / "s/ds/r1/kept.cs", subset="kept")
    assert again["job"].uid == sel["job"].uid
    assert sum(c[0] == "save_external_output" for c in fake.calls) == 1


def test_empty_subset_makes_no_job_and_pooling_skips_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    eng = make_engine(fake, extraction_box=256)
    r = eng.classify2d("J2.particles", tmp_path / "c/ds/round1", classes=6)
    scores = write_scores(tmp_path / "score/ds/round1/scores.csv", [3.0, 3.2, 3.4, 4.0, 4.6, 4.8])
    apply_round(r.data_star, scores, tmp_path / "select/ds/round1", round=1, rounds=3, formats=["star"])
    sel = eng.select_from_summary(r.job_dir, tmp_path / "select/ds/round1/selection.json", tmp_path / "cs/ds/round1")
    assert sel["accepted"] is None and sel["kept"]["n"] > 0
    assert len(fake.made("select_2D")) == 1
    final = eng.classify2d([tmp_path / "cs/ds/round1/kept.cs", tmp_path / "cs/ds/round1/accepted.cs"],
                           tmp_path / "c/ds/final", classes=6)
    pooled = fake.made("class_2D")[-1][1]["connections"]
    assert pooled == {"particles": [(sel["kept"]["job"].uid, "particles_selected")]}
    assert sum(final.extra["counts"]) == sel["kept"]["n"]


# --------------------------------------------------------------------------- refusals

def test_a_job_with_the_title_but_other_inputs_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    make_engine(fake, extraction_box=256).classify2d("J2.particles", tmp_path / "c/ds/r1", classes=6)
    fake.add_job("extract_micrographs_multi", {"particles": make_particles(30, BOX, APIX, seed=1)})
    other = f"J{fake.n}"
    with pytest.raises(EngineError, match=r"takes particles from J2\.particles"):
        make_engine(fake, extraction_box=256).classify2d(f"{other}.particles", tmp_path / "c/ds/r1", classes=6)


def test_an_earlier_different_selection_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    eng = make_engine(fake, extraction_box=256)
    r = eng.classify2d("J2.particles", tmp_path / "c/ds/r1", classes=6)
    eng.select(r.job_dir, [1, 2], tmp_path / "s/ds/r1/kept.cs", subset="kept")
    with pytest.raises(EngineError, match="an earlier run chose differently"):
        eng.select(r.job_dir, [1, 3], tmp_path / "s/ds/r1/kept.cs", subset="kept")


def test_a_failed_job_stops_the_run_with_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    fake.fail_types = {"homo_abinit"}
    eng = make_engine(fake, extraction_box=256, seed=5)
    with pytest.raises(EngineError) as err:
        eng.reconstruct_selection("J2.particles", tmp_path / "r/ds/all")
    text = str(err.value)
    assert "homo_abinit job P3 J4" in text and "fake log of J4: job failed" in text and "clear or delete" in text
    with pytest.raises(EngineError, match="status failed"):  # a rerun finds the failed job and says so
        eng.reconstruct_selection("J2.particles", tmp_path / "r/ds/all")
    assert len(fake.made("homo_abinit")) == 1


def test_sources_must_name_cryosparc_outputs_of_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = new_server(tmp_path)
    eng = make_engine(fake, extraction_box=256)
    loose = tmp_path / "loose.cs"
    make_particles(5).save(str(loose))
    with pytest.raises(InputError, match="not exported from cryoSPARC"):
        eng.classify2d(loose, tmp_path / "c/ds/x")
    with pytest.raises(InputError, match="J12.particles"):
        eng.classify2d("particles", tmp_path / "c/ds/x")
    r = eng.classify2d("J2.particles", tmp_path / "c/ds/r1", classes=6)
    other = CryosparcEngine({"project": "P4", "workspace": "W2"}, adapter=fake)
    with pytest.raises(InputError, match="exported from project P3"):
        other.classify2d(r.extra["particles_cs"], tmp_path / "c/ds/y")
    with pytest.raises(ValueError, match="unknown cryoSPARC option"):
        eng.classify2d("J2.particles", tmp_path / "c/ds/r1", device="cpu")


def test_registry_builds_the_engine(tmp_path):
    fake = new_server(tmp_path)
    eng = get_engine("cryosparc", config={"project": "P3", "workspace": "W2"}, adapter=fake, device="cpu", threads=2)
    assert eng.name == "cryosparc" and eng.supports("classify2d") and eng.supports("abinit")
    assert repr(eng) == "CryosparcEngine(project=P3, workspace=W2, run='cryosift')"
    info = eng.check()
    assert info["server_version"] == "v5.0.1" and info["project_title"] == "Fake project"
