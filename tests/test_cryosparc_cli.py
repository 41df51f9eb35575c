"""`cryosift cryosparc`: plan without a server, check, and the step commands over the fake server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryosift.cli import main
from cryosift.engines.cryosparc.adapter import CryosparcAdapter, tools_version
from cryosift.io import read_class_averages, read_cs
from tests.test_cryosparc_engine import new_server, write_scores

CONFIG = """\
seed: 2025
engine: cryosparc
cryosparc:
  project: P3
  workspace: W2
  run: cli
  base_url: http://cs.example.org:39000
  email: me@example.org
  micrographs: [J1.micrographs]
  extraction_box: 256
"""


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRYOSPARC_PASSWORD", "pw-never-printed")
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def test_plan_prints_the_job_graph_without_a_server(cfg, capsys):
    assert main(["cryosparc", "plan", "--config", str(cfg), "--source", "J2.particles", "--dataset", "apof",
                 "--cutoffs", "3.5", "--seed", "77", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    assert [s["type"] for s in specs][:4] == ["class_2D", "snowflake", "select_2D", "select_2D"]
    abinit = [s for s in specs if s["type"] == "homo_abinit"]
    assert len(abinit) == 1 and abinit[0]["params"]["abinit_seed_init"] == 77
    assert abinit[0]["connections"] == {"particles": ["apof/score_le_3.5/extract.particles"]}
    assert main(["cryosparc", "plan", "--config", str(cfg), "--box", "150", "--source", "J2.particles"]) == 0
    text = capsys.readouterr().out
    assert "data/round5/classify2d: class_2D_new" in text and "box_size_pix = 150" in text


def test_plan_and_check_report_problems(cfg, capsys, monkeypatch):
    cfg.write_text(CONFIG.replace("  extraction_box: 256\n", ""))
    assert main(["cryosparc", "plan", "--config", str(cfg), "--source", "J2.particles"]) == 2
    assert "give --box" in capsys.readouterr().err

    from tests.test_cryosparc_adapter import other_server

    server, pin = other_server()

    class OldServer:  # stands in for cryosparc.tools.CryoSPARC: logs in, then reports another version
        def __init__(self, **kwargs):
            from types import SimpleNamespace
            self.api = SimpleNamespace(config=SimpleNamespace(get_version=lambda: server))

    monkeypatch.setattr("cryosparc.tools.CryoSPARC", OldServer)
    assert main(["cryosparc", "check", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "cryosparc error" in err and server in err and pin in err
    assert "pw-never-printed" not in err


def test_step_commands_drive_the_server(cfg, tmp_path, capsys, monkeypatch):
    fake = new_server(tmp_path)
    monkeypatch.setattr(CryosparcAdapter, "connect", classmethod(lambda cls, settings, client_factory=None: fake))
    assert main(["cryosparc", "check", "--config", str(cfg)]) == 0
    # the fake server's version, the installed tools' version
    assert f"CryoSPARC v5.0.1 (cryosparc-tools {tools_version()}): project P3 'Fake project'" in capsys.readouterr().out

    r1 = tmp_path / "results/classify/ds/round1"
    assert main(["cryosparc", "classify", "J2.particles", "-o", str(r1), "--config", str(cfg), "--classes", "6",
                 "--diameter", "140", "--seed", "3"]) == 0
    assert fake.made()[0][1]["params"] == {"class2D_K": 6, "class2D_window_inner_A": 140.0, "random_seed": 3}
    assert fake.made()[0][1]["title"] == "[cryosift cli] ds/round1/classify2d"
    assert len(read_class_averages(r1)) == 6
    scores = write_scores(tmp_path / "results/score/ds/round1/scores.csv")
    assert main(["cryosparc", "scores", "--classification", str(r1), "--scores", str(scores),
                 "--config", str(cfg)]) == 0
    sel = tmp_path / "results/select/ds/round1"
    assert main(["select", "round", "--particles", str(r1 / "run_it020_data.star"), "--scores", str(scores),
                 "--round", "1", "--rounds", "3", "--format", "star", "-o", str(sel)]) == 0
    out = tmp_path / "results/cryosparc/ds/round1"
    assert main(["cryosparc", "select", "--classification", str(r1), "--selection", str(sel / "selection.json"),
                 "-o", str(out), "--config", str(cfg), "--method", "external"]) == 0
    kept = read_cs(out / "kept.cs")
    assert set(np.unique(kept["alignments2D/class"]).tolist()) == {2, 3}
    capsys.readouterr()
    assert main(["cryosparc", "reconstruct", "--particles", str(out / "kept.cs"), "-o",
                 str(tmp_path / "results/reconstruct/ds/kept"), "--config", str(cfg), "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    abinit = fake.made("homo_abinit")[0][1]
    assert abinit["params"]["abinit_seed_init"] == 5 and abinit["title"] == "[cryosift cli] ds/kept/abinit"
    assert summary["seed"] == 5 and summary["abinit"] == fake.find_jobs("P3", "W2", title=abinit["title"])[0].uid
    assert summary["map"].endswith("results/reconstruct/ds/kept/abinit/abinit.mrc")
    assert (tmp_path / "results/reconstruct/ds/kept/reconstruct/reconstruction_half1.mrc").exists()
