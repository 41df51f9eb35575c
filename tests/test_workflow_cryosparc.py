"""The workflow with ``engine: cryosparc``: the DAG of a mixed sheet, and a whole run against the fake server.

No CryoSPARC server can run here. Every rule of the workflow is a separate ``cryosift``
process, so the whole-run test shares one recording fake (tests/test_cryosparc_fake.py)
between them: a ``sitecustomize`` module on the run's PYTHONPATH makes
``CryosparcAdapter.connect`` return the fake kept in a pickle file, and saves it back when
the process ends (one process at a time holds it). Nothing of this reaches the package.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import yaml
from cryosparc.dataset import Dataset

from cryosift.io import read_cs, read_map, read_particles_star
from tests.test_cryosparc_fake import FakeAdapter, make_particles
from tests.test_workflow_run import check, snakemake

REPO = Path(__file__).resolve().parents[1]
HEADER = "dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds\tbox"

CRYOSPARC = {"project": "P3", "workspace": "W2", "run": "wf", "base_url": "http://cs.example.org:39000",
             "email": "me@example.org", "micrographs": ["J1.micrographs"], "extraction_box": 256}


def write_project(path: Path, rows, **config) -> Path:
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "datasets.tsv").write_text(
        "\n".join([HEADER] + ["\t".join(str(v) for v in row) for row in rows]) + "\n")
    (path / "config" / "config.yaml").write_text(yaml.safe_dump({"datasets": "config/datasets.tsv", **config}))
    return path


def job_counts(out: str) -> dict:
    """Jobs per rule of a dry run, from its job blocks."""
    from tests.workflow_plan import job_counts as count, parse_plan

    return count(parse_plan(out))


def shell_commands(out: str, program: str) -> list[str]:
    """The printed shell commands (``snakemake -n -p``) of one ``cryosift`` program, without the log redirect."""
    return [c.split(" > ")[0] for c in re.findall(rf"^(?:Shell command: )?(cryosift {program} .*)$", out, re.M)]


# --------------------------------------------------------------------------- the DAG

def test_dag_of_a_cryosparc_dataset_beside_a_builtin_one(tmp_path):
    rows = [["sp", "cryosparc", "J2.particles", "cryosparc", "150", "", "", "", ""],  # 256 px: three rounds
            ["demo", "simulated", "demo", "", "", "", "", "", ""]]                     # 64 px: five rounds
    project = write_project(tmp_path, rows, seed=11, cryosparc=CRYOSPARC,
                            classify={"classes": 30, "final_classes": 40})
    out = check(snakemake(project, "-n", "-p", "--cores", "2"))
    counts = job_counts(out)
    rounds, cutoffs = 3, 3
    assert counts["cryosparc_settings"] == 1 and counts["cryosparc_ingest"] == 1
    assert counts["cryosparc_classify"] == rounds + 1 and counts["cryosparc_scores"] == rounds + 1
    assert counts["cryosparc_select_round"] == rounds and counts["cryosparc_select_final"] == 1
    assert counts["cryosparc_reconstruct"] == cutoffs
    # the builtin dataset keeps its own rules; the local rules that read exports serve both
    assert counts["classify"] == 5 + 1 and counts["pool"] == 1 and counts["extract"] == counts["abinit"] == cutoffs
    assert counts["score"] == (rounds + 1) + 6 and counts["select_round"] == rounds + 5
    assert counts["select_final"] == 2 and counts["validate"] == 2 * cutoffs and counts["summarize"] == 2

    settings = "--config results/cryosparc/settings.json"
    classify = shell_commands(out, "cryosparc classify")
    assert all(settings in c and "--seed 11" in c and "--diameter 150" in c for c in classify)
    by_out = {re.search(r" -o (\S+)", c)[1]: c for c in classify}
    assert sorted(by_out) == [f"results/classify/sp/{s}" for s in ("final", "round1", "round2", "round3")]
    assert by_out["results/classify/sp/round1"].startswith("cryosift cryosparc classify J2.particles --classes 30")
    assert "--previous" not in by_out["results/classify/sp/round1"]
    assert by_out["results/classify/sp/round3"].startswith(
        "cryosift cryosparc classify results/cryosparc/sp/round2/kept.cs --classes 30")
    assert ("--previous results/classify/sp/round2/classification.json "
            "--previous-selection results/select/sp/round2/selection.json") in by_out["results/classify/sp/round3"]
    pooled = by_out["results/classify/sp/final"].split(" --classes")[0].split()[3:]
    assert pooled == ["results/cryosparc/sp/round3/kept.cs"] + [
        f"results/cryosparc/sp/round{r}/accepted.cs" for r in (1, 2, 3)]
    assert "--classes 40" in by_out["results/classify/sp/final"]
    assert all(f"--manifest {o}/classification.json" in c for o, c in by_out.items())

    select = shell_commands(out, "cryosparc select")
    assert sorted(re.search(r" -o (\S+)", c)[1] for c in select) == [
        f"results/cryosparc/sp/{s}" for s in ("final", "round1", "round2", "round3")]
    assert all(settings in c for c in select + shell_commands(out, "cryosparc scores"))
    reconstruct = shell_commands(out, "cryosparc reconstruct")
    assert sorted(reconstruct) == sorted(
        f"cryosift cryosparc reconstruct {settings} --particles results/cryosparc/sp/final/score_le_{c}.cs "
        f"-o results/cryosparc/sp/cutoff{c} --seed 11 --copy-to results/abinit/sp/cutoff{c}"
        for c in ("2.5", "3.5", "4.5"))
    # the builtin dataset is classified here; the settings rule passes the block as given
    assert any("cryosift classify2d" in c and "results/classify/demo/round1" in c for c in out.splitlines())
    settings_cmd = shell_commands(out, "cryosparc settings")[0]
    assert json.loads(re.search(r"--json '(.*)' -o", settings_cmd)[1]) == CRYOSPARC


def test_dag_sheet_box_and_classification_source(tmp_path):
    """A 2D job as the source: round 1 scores its export; the sheet's box sets rounds and --box; a
    configured ab initio seed wins over the workflow's."""
    rows = [["sp", "cryosparc", "J12", "", "", "", "", "", "320"]]  # > 300 px: two rounds
    project = write_project(tmp_path, rows, engine="cryosparc", selection={"cutoffs": [4.5]},
                            cryosparc={**CRYOSPARC, "extraction_box": None, "seed": 5})
    out = check(snakemake(project, "-n", "-p", "--cores", "1"))
    counts = job_counts(out)
    assert counts["cryosparc_ingest_classified"] == 1 and counts["cryosparc_classify"] == 2  # round 2 and final
    assert counts["cryosparc_scores"] == 3 and counts["cryosparc_reconstruct"] == 1
    assert shell_commands(out, "cryosparc ingest") == [
        "cryosift cryosparc ingest --config results/cryosparc/settings.json --dataset sp --source J12 "
        "-o results/ingest/sp"]
    scores = shell_commands(out, "cryosparc scores")
    assert any("--classification results/ingest/sp/classification.json" in c for c in scores)
    assert all("--box 320" in c for c in shell_commands(out, "cryosparc classify"))
    assert "--seed 5 --box 320" in shell_commands(out, "cryosparc reconstruct")[0]


@pytest.mark.parametrize("row, config, message", [
    (["sp", "cryosparc", "J2.particles", "", "", "", "", "", ""], {"cryosparc": {**CRYOSPARC, "extraction_box": None}},
     "set cryosparc.extraction_box or the sheet's box column"),
    (["sp", "cryosparc", "J2.particles", "builtin", "", "", "", "", ""], {}, "set engine cryosparc"),
    (["sp", "simulated", "demo", "cryosparc", "", "", "", "", ""], {}, "works on particles on the server"),
    (["sp", "cryosparc", "J2.particles", "cryosparc", "", "", "", "2", ""],
     {"cryosparc": {**CRYOSPARC, "password": "x"}}, "password"),
])
def test_dag_refuses_what_the_server_cannot_run(tmp_path, row, config, message):
    project = write_project(tmp_path, [row], engine="cryosparc", **config)
    proc = snakemake(project, "-n", "--cores", "1")
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- the commands the rules run

@pytest.fixture
def server(tmp_path, monkeypatch):
    """The fake server behind every `cryosift cryosparc` call of one test (in this process)."""
    from cryosift.engines.cryosparc.adapter import CryosparcAdapter

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRYOSPARC_PASSWORD", "pw")
    fake = new_server(tmp_path / "P3")
    monkeypatch.setattr(CryosparcAdapter, "connect", classmethod(lambda cls, settings, client_factory=None: fake))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(CRYOSPARC))
    return fake, settings


def test_settings_file_is_checked_and_never_holds_a_password(tmp_path, monkeypatch, capsys):
    from cryosift.cli import main

    out = tmp_path / "settings.json"
    block = {k: v for k, v in CRYOSPARC.items() if k != "workspace"}
    monkeypatch.setenv("CRYOSIFT_CRYOSPARC_WORKSPACE", "W9")
    assert main(["cryosparc", "settings", "--json", json.dumps(block), "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == {**block, "workspace": "W9"}  # resolved once, for every step
    for bad, message in (({**block, "password": "secret"}, "cryosparc.password"),
                         ({**block, "lanes": "gpu"}, "unknown cryosparc setting(s): lanes"),
                         ({**block, "project": "3"}, "cryosparc.project must look like P3")):
        assert main(["cryosparc", "settings", "--json", json.dumps(bad), "-o", str(tmp_path / "bad.json")]) == 2
        err = capsys.readouterr().err
        assert message in err and "secret" not in err
    assert not (tmp_path / "bad.json").exists()


def test_ingest_of_a_2d_job_exports_it_for_round_one(server, tmp_path):
    from cryosift.cli import main
    from cryosift.pipeline.manifest import read_manifest

    fake, settings = server
    job = fake.create_job("P3", "W2", "class_2D", {"class2D_K": 4}, {"particles": [("J2", "particles")]}, "mine")
    fake.queue_and_wait("P3", job.uid)
    assert main(["cryosparc", "ingest", "--config", str(settings), "--dataset", "sp", "--source", job.uid,
                 "-o", "results/ingest/sp", "--diameter", "90"]) == 0
    info = json.loads((tmp_path / "results/ingest/sp/dataset.json").read_text())
    assert info["n_particles"] == N and info["box"] == BOX and info["pixel_size"] == APIX
    assert info["has_classes"] and info["diameter_A"] == 90.0 and info["model"] is None
    manifest = read_manifest(tmp_path / "results/ingest/sp/classification.json")
    assert manifest["engine"] == "cryosparc" and manifest["job_dir"] == tmp_path / "results/ingest/sp/Class2D"
    assert len(read_particles_star(manifest["data_star"])) == N
    assert not fake.made()[1:]  # the user's job is exported, not run again
    assert main(["cryosparc", "ingest", "--config", str(settings), "--dataset", "sp", "--source", "J2.particles",
                 "-o", "results/ingest/sp2"]) == 0
    assert not (tmp_path / "results/ingest/sp2/classification.json").exists()


def test_classify_reuses_the_previous_round_after_the_loop_stopped(server, tmp_path):
    from cryosift.cli import main

    fake, settings = server
    r1 = tmp_path / "results/classify/sp/round1"
    assert main(["cryosparc", "classify", "J2.particles", "-o", str(r1), "--config", str(settings),
                 "--classes", "4", "--manifest", str(r1 / "classification.json")]) == 0
    stop = tmp_path / "selection.json"
    stop.write_text(json.dumps({"step": "round", "stop": True}))
    made = len(fake.made())
    r2 = tmp_path / "results/classify/sp/round2/classification.json"
    assert main(["cryosparc", "classify", "results/cryosparc/sp/round1/kept.cs", "-o", str(r2.parent),
                 "--config", str(settings), "--manifest", str(r2), "--previous", str(r1 / "classification.json"),
                 "--previous-selection", str(stop)]) == 0
    record = json.loads(r2.read_text())
    assert record["reused_from"] == str(r1 / "classification.json") and len(fake.made()) == made
    assert main(["cryosparc", "classify", "J2.particles", "-o", str(r2.parent), "--config", str(settings),
                 "--previous-selection", str(stop)]) == 2


# --------------------------------------------------------------------------- a whole run against the fake

SITECUSTOMIZE = '''\
"""Test run only: every process of the run talks to one fake CryoSPARC server kept in a pickle file."""
import atexit
import fcntl
import importlib.abc
import importlib.machinery
import os
import pickle
import sys

STATE = os.environ["CRYOSIFT_TEST_FAKE_SERVER"]
TARGET = "cryosift.engines.cryosparc.adapter"


def _connect(cls, settings, client_factory=None):
    lock = open(STATE + ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # held until this process has saved the server back
    with open(STATE, "rb") as fh:
        fake = pickle.load(fh)

    def save():
        with open(STATE + ".part", "wb") as fh:
            pickle.dump(fake, fh)
        os.replace(STATE + ".part", STATE)
        lock.close()

    atexit.register(save)
    return fake


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.CryosparcAdapter.connect = classmethod(_connect)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Patch())
'''

BOX, APIX, N = 64, 2.5, 240
#: Real class averages for the fake's 2D jobs: the first eight of the demo's round 1 (README there).
DEMO_ROUND1 = REPO / "tests" / "data" / "demo_round1"


class WorkflowServer(FakeAdapter):
    """The fake with class averages worth scoring and maps worth validating.

    Its 2D jobs serve real class averages of our engine (the demo's round 1, simulated at SNR 0.3,
    at the demo's 54 px classification box; the shipped model scores them 1.9-5.0) instead of the base
    fake's discs, so the shipped model scores them as it scores a real run and the selection
    thresholds can stay the method's. Its maps are a smooth density on the particles' box, and
    half maps that share it under independent noise (the base fake writes constant 12^3 maps).
    """

    def _run_class_2D(self, job):
        super()._run_class_2D(job)
        with mrcfile.open(DEMO_ROUND1 / "class_averages.mrcs", permissive=True) as mrc:
            images, apix = np.asarray(mrc.data, dtype=np.float32), float(mrc.voxel_size.x)
        resolution = pd.read_csv(DEMO_ROUND1 / "classes.csv")["resolution_A"].to_numpy(np.float32)
        averages = self.outputs[(job.uid, "class_averages")]
        served = np.arange(len(averages)) % len(images)
        self._write_mrc(averages["blob/path"][0], images[served], apix)
        averages["blob/shape"] = np.tile(images.shape[1:], (len(averages), 1))
        averages["blob/psize_A"] = apix
        averages["blob/res_A"] = resolution[served]

    _run_class_2D_new = _run_class_2D

    def _volume(self, job, slots, psize) -> Dataset:
        box = int(self._input(job, "particles")["blob/shape"][0][-1])
        z, y, x = np.mgrid[:box, :box, :box] - box / 2
        signal = sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * 2.5 ** 2))
                     for cx, cy, cz in ((0, 0, 0), (5, 2, -3), (-4, 4, 2), (2, -6, 4)))
        ds = Dataset.allocate(1, [(f"{s}/{f}", t) for s in slots for f, t in (("path", "O"), ("psize_A", "f4"))])
        for i, slot in enumerate(slots):
            noise = np.random.default_rng(i).normal(scale=0.05 if i else 0.0, size=signal.shape)
            rel = f"{job.uid}/{job.uid}_{slot}.mrc"
            self._write_mrc(rel, (signal + noise).astype(np.float32), psize)
            ds[f"{slot}/path"] = np.array([rel], dtype=object)
            ds[f"{slot}/psize_A"] = psize
        return ds


def new_server(root: Path) -> WorkflowServer:
    fake = WorkflowServer(root, default_k=6)
    mics = Dataset.allocate(4, [("micrograph_blob/path", "O")])
    mics["micrograph_blob/path"] = np.array([f"J1/motioncorrected/mic{i}.mrc" for i in range(4)], dtype=object)
    fake.add_job("patch_ctf_estimation_multi", {"micrographs": mics})  # J1
    fake.add_job("extract_micrographs_multi", {"particles": make_particles(N, BOX, APIX)}, {"box_size_pix": BOX})  # J2
    return fake


RUN_CONFIG = {
    "seed": 7, "device": "cpu", "engine": "cryosparc",
    "classify": {"classes": 8, "final_classes": 8},
    # the method's thresholds; no class average scores <= 0.5, so that cutoff's branch is empty
    "selection": {"accept_score": 2.5, "reject_score": 4.5, "cutoffs": [0.5, 2.5, 4.5]},
    "validate": {"reslog": False},
    "cryosparc": {**CRYOSPARC, "extraction_box": BOX},
}


SHEET = [["sp", "cryosparc", "J2.particles", "", "", "", "", "2", ""]]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cryosparc_wf")
    project = write_project(root / "project", SHEET, **RUN_CONFIG)
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    state = root / "server.pickle"
    state.write_bytes(pickle.dumps(new_server(root / "P3")))
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "CRYOSIFT_TEST_FAKE_SERVER": str(state), "CRYOSPARC_PASSWORD": "pw-never-written"}
    out = check(snakemake(project, "--cores", "2", env=env))
    return {"project": project, "results": project / "results", "state": state, "env": env, "out": out,
            "fake": pickle.loads(state.read_bytes()), "config": RUN_CONFIG}


ROUNDS, CUTOFFS = 2, ("0.5", "2.5", "4.5")
TYPES = {"classify2d": "class_2D_new", "scores": "snowflake", "extract": "extract_micrographs_multi",
         "abinit": "homo_abinit", "reconstruct": "homo_reconstruct"}  # 64 px: the small-particle 2D job


def made(fake) -> list:
    """(type, step) of the jobs the run made, in the order they were made."""
    jobs = sorted((j for j in fake.jobs.values() if "cryosift-wf" in j.tags), key=lambda j: j.number)
    return [(j.type, j.title.removeprefix("[cryosift wf] ")) for j in jobs]


def uid_of(fake, step: str) -> str:
    return [j.uid for j in fake.jobs.values() if j.title == f"[cryosift wf] {step}"][0]


def selection(results: Path, step: str) -> dict:
    return json.loads((results / "select" / "sp" / step / "selection.json").read_text())


def expected_loop(results: Path) -> list:
    """The 2D part of the job graph, from the decisions the local selections wrote: a subset
    without classes makes no job, and a round after the loop stopped reuses a classification."""
    steps, stopped = [], False
    for r in range(1, ROUNDS + 1):
        sel = selection(results, f"round{r}")
        steps += [] if stopped else [f"sp/round{r}/classify2d"]
        steps.append(f"sp/round{r}/scores")
        steps += [f"sp/round{r}/select_{name}" for name in ("accepted", "kept")
                  if any(sel["classes"][s] for s in sel["subsets"][name])]
        stopped = stopped or sel["stop"]
    final = selection(results, "final")
    steps += ["sp/final/classify2d", "sp/final/scores"]
    steps += [f"sp/final/select_score_le_{c}" for c in CUTOFFS if final["cutoffs"][c]["classes_kept"]]
    return [(TYPES.get(s.rsplit("/", 1)[1], "select_2D"), s) for s in steps]


def test_run_makes_the_job_graph_of_the_scores(fake_run):
    fake, results = fake_run["fake"], fake_run["results"]
    jobs = made(fake)
    loop = expected_loop(results)
    assert jobs[:len(loop)] == loop
    # the thresholds give round 1 every kind of decision, and one cutoff keeps nothing
    round1 = selection(results, "round1")
    assert round1["particles"]["accepted"] and round1["particles"]["kept"] + round1["particles"]["attractor"]
    assert round1["particles"]["rejected"] and not selection(results, "final")["cutoffs"]["0.5"]["classes_kept"]

    # each non-empty cutoff: re-extraction, ab initio, reconstruction, in that order (cutoffs may interleave)
    branches = jobs[len(loop):]
    kept = [c for c in CUTOFFS if selection(results, "final")["cutoffs"][c]["classes_kept"]]
    assert len(branches) == 3 * len(kept)
    for c in kept:
        assert [j for j in branches if j[1].startswith(f"sp/cutoff{c}/")] == [
            (TYPES[a], f"sp/cutoff{c}/{a}") for a in ("extract", "abinit", "reconstruct")]
    abinit = [j for j in fake.jobs.values() if j.type == "homo_abinit"]
    assert len(abinit) == len(kept) and {j.params["abinit_seed_init"] for j in abinit} == {7}
    for c in kept:
        extract = fake.jobs[uid_of(fake, f"sp/cutoff{c}/extract")]
        assert extract.params == {"box_size_pix": BOX}
        assert extract.connections == {"micrographs": [("J1", "micrographs")],
                                       "particles": [(uid_of(fake, f"sp/final/select_score_le_{c}"),
                                                      "particles_selected")]}
    for j in fake.jobs.values():
        if j.type == "class_2D_new":
            assert j.params["class2D_K"] == 8 and j.params["random_seed"] == 7

    # the final classification pools the last round's kept particles with every accepted subset
    pooled = [(uid_of(fake, f"sp/round{ROUNDS}/select_kept"), "particles_selected")]
    pooled += [(uid_of(fake, f"sp/round{r}/select_accepted"), "particles_selected") for r in range(1, ROUNDS + 1)
               if selection(results, f"round{r}")["particles"]["accepted"]]
    final = fake.jobs[uid_of(fake, "sp/final/classify2d")]
    assert sorted(final.connections["particles"]) == sorted(pooled) and len(pooled) >= 2
    assert len(fake.outputs[(final.uid, "particles")]) == sum(len(fake.outputs[p]) for p in pooled)


def test_run_exports_what_the_local_steps_read(fake_run):
    results = fake_run["results"]
    for step in [f"round{r}" for r in range(1, ROUNDS + 1)] + ["final"]:
        manifest = json.loads((results / "classify" / "sp" / step / "classification.json").read_text())
        assert manifest["engine"] == "cryosparc" and manifest["reused_from"] is None
        job = results / "classify" / "sp" / step
        assert (job / manifest["model_star"]).exists() and list(job.glob("J*_class_averages.mrc"))
        shown = json.loads((results / "cryosparc" / "sp" / step / "scores.json").read_text())
        assert shown["classification"] == json.loads((job / "cryosparc.json").read_text())["classification"]
    for r in range(1, ROUNDS + 1):
        sel = selection(results, f"round{r}")
        for name in ("accepted", "kept"):
            exported = read_cs(results / "cryosparc" / "sp" / f"round{r}" / f"{name}.cs")
            classes = {c for s in sel["subsets"][name] for c in sel["classes"][s]}
            assert len(exported) == sum(sel["particles"][s] for s in sel["subsets"][name])
            assert set((np.asarray(exported["alignments2D/class"]) + 1).tolist()) <= classes
    settings = json.loads((results / "cryosparc" / "settings.json").read_text())
    assert settings == RUN_CONFIG["cryosparc"] and "password" not in settings
    for path in results.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".star"):
            assert "pw-never-written" not in path.read_text(errors="replace"), path


def test_run_validates_every_cutoff(fake_run):
    results = fake_run["results"]
    final = selection(results, "final")
    for c in CUTOFFS:
        n = final["cutoffs"][c]["particles_kept"]
        assert len(read_cs(results / "cryosparc" / "sp" / "final" / f"score_le_{c}.cs")) == n
        branch = results / "abinit" / "sp" / f"cutoff{c}"
        validation = json.loads((results / "validate" / "sp" / f"cutoff{c}" / "validation.json").read_text())
        assert validation["particles_kept"] == len(read_particles_star(branch / "abinit_particles.star")) == n
        assert validation["particles_total"] == N and validation["box"] == BOX
        volume, apix = read_map(branch / "abinit.mrc")
        assert volume.shape == (BOX,) * 3 and apix == pytest.approx(APIX)
        if n:
            exported = results / "cryosparc" / "sp" / f"cutoff{c}" / "abinit" / "abinit.mrc"
            assert (branch / "abinit.mrc").read_bytes() == exported.read_bytes()
            assert validation["status"] == "validated" and validation["half_maps"]
            assert 2 * APIX <= validation["fsc0143_half_A"] < 100
        else:
            assert validation["status"] == "no particles kept" and not volume.any()
            assert not (branch / "abinit_half1.mrc").exists()
    table = pd.read_csv(results / "report" / "comparison.csv")
    assert sorted(table["cutoff"]) == [float(c) for c in CUTOFFS]


def test_second_run_has_nothing_to_do_and_makes_no_jobs(fake_run):
    before = fake_run["state"].read_bytes()
    out = check(snakemake(fake_run["project"], "--cores", "2", env=fake_run["env"]))
    assert "Nothing to be done" in out
    assert fake_run["state"].read_bytes() == before


def test_changed_settings_rerun_what_depends_on_them(fake_run, tmp_path):
    config = {"datasets": "config/datasets.tsv", **fake_run["config"],
              "cryosparc": {**RUN_CONFIG["cryosparc"], "lane": "gpu"}}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    counts = job_counts(check(snakemake(fake_run["project"], "-n", "--cores", "2", "--configfile", str(changed),
                                        env=fake_run["env"])))
    assert counts["cryosparc_settings"] == 1 and counts["cryosparc_classify"] == ROUNDS + 1
    assert counts["cryosparc_reconstruct"] == len(CUTOFFS) and counts["validate"] == len(CUTOFFS)


def test_forced_rerun_finds_the_jobs_again(fake_run):
    """Each cutoff's process runs again and finds its extraction, ab initio and reconstruction by title."""
    project, state = fake_run["project"], fake_run["state"]
    maps = {c: (project / "results" / "abinit" / "sp" / f"cutoff{c}" / "abinit.mrc").read_bytes() for c in CUTOFFS}
    check(snakemake(project, "--cores", "2", "--forcerun", "cryosparc_reconstruct", "--until",
                    "cryosparc_reconstruct", env=fake_run["env"]))
    fake = pickle.loads(state.read_bytes())
    assert made(fake) == made(fake_run["fake"]) and len(fake.calls) > len(fake_run["fake"].calls)
    assert not [c for c in fake.calls[len(fake_run["fake"].calls):] if c[0] in ("create_job", "queue")]
    for c in CUTOFFS:
        assert (project / "results" / "abinit" / "sp" / f"cutoff{c}" / "abinit.mrc").read_bytes() == maps[c]
