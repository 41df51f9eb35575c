"""Out-of-domain warning and the empty-class rule: the rule, the score CLI, selection, summary, report."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.cli import main as cli_main
from cryosift.io import read_particles_star, write_stack
from cryosift.pipeline.summary import summarize_dataset
from cryosift.report.summary import write_report
from cryosift.scoring import score_classes
from cryosift.scoring.checkpoint import ModelConfig, ScoringModel
from cryosift.scoring.domain import (
    MIN_CLASSES_FOR_BAND,
    check_scores_domain,
    rejection_warning,
    warning_line,
)
from cryosift.scoring.empty import EMPTY_SCORE, apply_empty_rule, empty_classes
from cryosift.selection import apply_final, apply_round
from tests.test_report import write_validation
from tests.test_scoring_data import make_relion_job


def codes(warnings):
    return [w.code for w in warnings]


def test_nothing_kept_fires_only_when_no_class_with_particles_is_at_or_below_the_cutoff():
    assert codes(check_scores_domain([3.6, 4.0, 5.2])) == ["nothing_kept"]
    assert check_scores_domain([3.5, 4.0, 5.2]) == []  # a score at the cutoff is kept
    assert check_scores_domain([-0.3, 4.9]) == []
    # an empty class scoring 3.0 keeps nothing: it holds no particles
    w = check_scores_domain([3.0, 4.1, 4.6], distribution=[0.0, 0.6, 0.4])
    assert codes(w) == ["nothing_kept"] and "best 4.10" in w[0].reason
    assert check_scores_domain([3.0, 4.1, 4.6], empty=[False, True, True]) == []
    assert check_scores_domain([]) == []


def test_narrow_band_needs_enough_classes_a_band_under_one_grade_and_no_good_class():
    n = MIN_CLASSES_FOR_BAND
    band = np.linspace(3.0, 3.95, n)
    assert codes(check_scores_domain(band)) == ["narrow_band"]
    assert "within 0.95 grade (3.00-3.95)" in check_scores_domain(band)[0].reason
    assert check_scores_domain(band[:-1]) == []  # too few classes to judge a spread
    assert check_scores_domain(np.linspace(3.0, 4.0, n)) == []  # one whole grade is not narrow
    assert check_scores_domain(np.linspace(1.6, 2.5, n)) == []  # all good: a clean job, not a drift
    both = check_scores_domain(np.linspace(4.0, 4.9, n))
    assert codes(both) == ["nothing_kept", "narrow_band"]


def test_most_rejected_counts_particles_not_classes():
    scores = [1.5, 2.0, 4.5, 4.8]
    assert codes(check_scores_domain(scores, distribution=[0.3, 0.19, 0.5, 0.01])) == ["most_rejected"]
    assert check_scores_domain(scores, distribution=[0.3, 0.2, 0.49, 0.01]) == []  # 50 % is not most
    w = rejection_warning(51, 100)
    assert w.code == "most_rejected" and "rejects 51 of 100 particles (51%" in w.reason
    assert rejection_warning(50, 100) is None and rejection_warning(0, 0) is None


def test_the_warning_is_one_line_naming_the_gallery_and_fine_tuning():
    line = warning_line(check_scores_domain(np.linspace(4.0, 4.9, 12)), "score/scores.png")
    assert "\n" not in line and line.startswith("WARNING: out of domain: no class scores at or below 3.5")
    assert "the gallery score/scores.png" in line
    assert "cryosift train --init default --labels" in line and "docs/training.md" in line
    assert warning_line([]) == ""


def test_empty_classes_from_distribution_or_counts():
    np.testing.assert_array_equal(empty_classes([0.5, 0.0, 0.5]), [False, True, False])
    # counts win where a table has them; all-zero counts mean "not known"
    np.testing.assert_array_equal(empty_classes([0.5, 0.001, 0.499], [10, 0, 9]), [False, True, False])
    np.testing.assert_array_equal(empty_classes([0.5, 0.001, 0.499], [0, 0, 0]), [False, False, False])
    np.testing.assert_array_equal(apply_empty_rule([2.0, 3.1, 6.2], [False, True, True]), [2.0, EMPTY_SCORE, 6.2])


@pytest.fixture(scope="module")
def noise_stack(tmp_path_factory):
    """Twelve class averages of pure noise, one of them empty: the shipped model finds no particle."""
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(4)
    write_stack(root / "noise.mrcs", rng.normal(size=(12, 48, 48)).astype(np.float32), 3.0)
    dist = np.full(12, 1 / 11)
    dist[5] = 0.0
    pd.DataFrame({"distribution": dist, "resolution_A": 20.0}).to_csv(root / "noise.csv", index=False)
    return root


def test_score_cli_writes_one_warning_line_to_stderr_on_a_job_the_model_finds_nothing_in(noise_stack):
    out = noise_stack / "scored"
    run = subprocess.run([sys.executable, "-m", "cryosift", "score", str(noise_stack / "noise.mrcs"), "--features",
                          str(noise_stack / "noise.csv"), "--pixel-size", "3", "-o", str(out), "-j", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out / "scores.csv")
    assert (table["score"] > 3.5).all()
    assert table["empty_class"].tolist() == [i == 5 for i in range(12)] and table["score"][5] >= EMPTY_SCORE
    lines = [x for x in run.stderr.splitlines() if "out of domain" in x]
    assert len(lines) == 1
    assert "no class scores at or below 3.5" in lines[0] and f"the gallery {out / 'scores.png'}" in lines[0]
    assert "cryosift train --init default --labels" in lines[0]


class SureNetwork(torch.nn.Module):
    """A network that finds every class average excellent (output 0.8: score 1.0)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, features):
        return torch.full((x.shape[0], 1), 0.8) + 0 * self.w


def test_an_empty_class_never_scores_better_than_five_however_good_its_image_looks():
    from cryosift.io.models import ClassAverages

    img = np.random.default_rng(0).normal(size=(4, 48, 48)).astype(np.float32)
    classes = ClassAverages(images=img, pixel_size=3.0, class_numbers=np.arange(1, 5), resolution=np.full(4, 20.0),
                            distribution=np.array([0.6, 0.4, 0.0, 0.0]), particle_count=np.zeros(4, np.int64),
                            source=None, engine="stack")
    t = score_classes(classes, ScoringModel(SureNetwork(), ModelConfig()))
    np.testing.assert_allclose(t["network_output"], 0.8, atol=1e-6)
    np.testing.assert_allclose(t["score"], [1.0, 1.0, EMPTY_SCORE, EMPTY_SCORE], atol=1e-6)
    assert t["empty_class"].tolist() == [False, False, True, True]
    np.testing.assert_allclose(t["class_score"], [1.0, 1.0, 0.0, 0.0], atol=1e-6)
    # counts, where known, mark the empty class even with a (soft) distribution above zero
    classes.distribution = np.array([0.6, 0.399, 0.001, 0.0])
    classes.particle_count = np.array([6, 4, 0, 0])
    assert score_classes(classes, ScoringModel(SureNetwork(), ModelConfig()))["empty_class"].tolist() == [False, False,
                                                                                                     True, True]


@pytest.fixture(scope="module")
def relion(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    job = make_relion_job(root, k=6, box=48, n_particles=120)
    classes = read_particles_star(job / "run_it025_data.star").particles["rlnClassNumber"].to_numpy()
    return root, job / "run_it025_data.star", classes


def test_a_round_that_rejects_most_particles_says_so_in_its_log_and_selection_json(relion, tmp_path, caplog):
    root, data, classes = relion
    n = np.bincount(classes, minlength=7)[1:]
    # the two largest classes are kept, every other one rejected
    order = np.argsort(-n)
    scores = np.full(6, 4.7)
    scores[order[:2]] = [3.0, 4.0]
    rejected = int(n[order[2:]].sum())
    assert rejected > 60  # most of the 120 particles, by construction of the test job
    pd.DataFrame({"class": np.arange(1, 7), "score": scores}).to_csv(root / "drift.csv", index=False)
    assert cli_main(["select", "round", "--particles", str(data), "--scores", str(root / "drift.csv"), "--round", "1",
                     "--rounds", "3", "-o", str(tmp_path / "r1")]) == 0
    records = [r for r in caplog.records if "out of domain" in r.getMessage()]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1 and records[0].levelname == "WARNING"
    assert f"this round rejects {rejected} of 120 particles" in lines[0]
    assert f"the gallery {root / 'drift.png'}" in lines[0]
    s = json.loads((tmp_path / "r1/selection.json").read_text())
    assert s["warning"] == lines[0] and [w["code"] for w in s["warnings"]] == ["most_rejected"]
    # the same particles with scores the model is sure of: no warning
    pd.DataFrame({"class": np.arange(1, 7), "score": np.where(scores < 4.5, 2.0, 3.0)}).to_csv(root / "ok.csv",
                                                                                                index=False)
    s_ok = apply_round(data, root / "ok.csv", tmp_path / "ok", round=1, rounds=3)
    assert "warning" not in s_ok and s_ok["particles"]["rejected"] == 0
    f = apply_final(data, root / "drift.csv", tmp_path / "final", cutoffs=[3.5])
    assert "warning" not in f and "warnings" not in f  # 3.0 is kept at 3.5: the final scores alone look fine


def test_summary_and_report_carry_the_warnings(relion, tmp_path):
    root, data, classes = relion
    scores = pd.DataFrame({"class": np.arange(1, 7), "score": [3.8, 4.6, 4.7, 4.8, 4.9, 5.0]})
    scores.to_csv(root / "all_bad.csv", index=False)
    r1 = apply_round(data, root / "all_bad.csv", tmp_path / "round1", round=1, rounds=2)
    fin = apply_final(data, root / "all_bad.csv", tmp_path / "final", cutoffs=[3.5, 4.5])
    assert "no class scores at or below 3.5 (best 3.80)" in fin["warning"]
    info = tmp_path / "dataset.json"
    info.write_text(json.dumps({"dataset": "apof", "type": "relion", "box": 48, "pixel_size": 3.0,
                                "n_particles": 120}))
    summary = summarize_dataset(info, [tmp_path / "round1/selection.json"], tmp_path / "final/selection.json", [])
    steps = [w["step"] for w in summary["warnings"]]
    rejected = r1["particles"]["rejected"]
    assert rejected == int((classes != 1).sum()) and rejected > 60  # most of the 120 by construction
    assert steps == ["round 1", "loop", "final"]
    assert f"the loop rejected {rejected} of the dataset's 120 particles" in summary["warnings"][1]["warning"]
    assert summary["warnings"][0]["warning"] == r1["warning"]
    sp = tmp_path / "apof.json"
    sp.write_text(json.dumps(summary))
    v = write_validation(tmp_path / "validate/apof/cutoff3.5", "apof", 3.5, 80000, 3.1, 0.6, 80.0, with_curve=False)
    write_report([v], tmp_path / "report", summaries=[sp])
    md = (tmp_path / "report/comparison.md").read_text()
    assert "## Warnings" in md
    assert f"- apof, final: {fin['warning']}" in md and f"- apof, round 1: {r1['warning']}" in md
