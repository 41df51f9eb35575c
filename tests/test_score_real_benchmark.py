"""benchmarks/score_real.py: finds real sets, scores them through the library, prints the peer columns."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryosift.errors import InputError
from cryosift.io import write_stack

ROOT = Path(__file__).resolve().parents[1]
GRADES = [1.0, 2.0, 2.5, 3.0, 4.0, 4.5, 5.0, 5.0]
RANKER = [1, 1, 0, 0, 0, 1, 0, 0]


def load_bench():
    spec = importlib.util.spec_from_file_location("score_real", ROOT / "benchmarks" / "score_real.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture(scope="module")
def real_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("realdata")
    rng = np.random.default_rng(2)
    (root / "tutorial").mkdir()
    write_stack(root / "tutorial/job010_classes.mrcs", rng.normal(size=(8, 48, 48)).astype(np.float32), 3.0)
    dist = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.1, 0.05, 0.0])
    pd.DataFrame({"class": np.arange(1, 9), "distribution": dist, "grade": GRADES,
                  "ranker_kept": RANKER}).to_csv(root / "tutorial/job010_grades.csv", index=False)
    write_stack(root / "job011_classes.mrcs", rng.normal(size=(8, 48, 48)).astype(np.float32), 0.0)
    pd.DataFrame({"class": np.arange(1, 9), "distribution": dist, "grade": GRADES}).to_csv(
        root / "job011_grades.csv", index=False)
    return root


def rows(out: str) -> dict:
    table = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and not line.startswith("| set")]
    return {(r[0].strip("| "), r[1]): r for r in table}


def test_scores_every_set_with_each_model_beside_the_class_ranker(real_sets, tmp_path, capsys):
    bench = load_bench()
    with pytest.raises(InputError, match="job011_classes.mrcs: no pixel size"):
        bench.main([str(real_sets), "--peer", "none"])  # the header of job011 has none
    assert bench.main([str(real_sets), "--peer", "none", "--pixel-size", "job011=2.5",
                       "--csv", str(tmp_path / "c.csv")]) == 0
    got = rows(capsys.readouterr().out)
    assert set(got) == {("job011", "default"), ("tutorial/job010", "default"),
                        ("tutorial/job010", "RELION class ranker (peer)")}
    ranker = got[("tutorial/job010", "RELION class ranker (peer)")]
    # good (<= 2.5): classes 1-3, ranker keeps 1 and 2; bad (>= 4): classes 5-8, it keeps 6;
    # AUC of "dropped" for bad vs rest: (3 x 2 wins + 3 x 2 / 2 + 1 x 2 / 2 ties) / 16 = 0.625
    assert ranker[5:7] == ["2 / 3", "1 / 4"] and ranker[4] == "0.625"
    per_class = pd.read_csv(tmp_path / "c.csv")
    assert len(per_class) == 16 and set(per_class["model"]) == {"default"}
    # the printed figures are those of the per-class scores
    one = per_class[per_class["set"] == "tutorial/job010"]
    s, g = one["score"].to_numpy(), one["grade"].to_numpy()
    row = got[("tutorial/job010", "default")]
    assert row[2] == "8" and row[7] == f"{s.min():.2f}-{s.max():.2f}"
    assert row[6] == f"{int((s[g >= 4] <= 3.5).sum())} / 4"
    assert s[7] >= 5.0  # class 8 holds no particles


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_a_model_from_a_git_revision_scores_like_the_same_file(real_sets, tmp_path, capsys):
    bench = load_bench()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    path = bench.model_checkpoint(f"git:{head}", tmp_path)
    committed = subprocess.run(["git", "-C", str(ROOT), "show", f"{head}:src/cryosift/models/default.pt"],
                               capture_output=True).stdout
    assert Path(path).read_bytes() == committed
    with pytest.raises(InputError, match="cannot read"):
        bench.model_checkpoint("git:no-such-revision", tmp_path)


def test_unlevelled_models_score_masked_sets_as_releases_before_the_levelling(tmp_path, capsys):
    """A set masked as RELION stores class averages: the shipped model levels its solvent step, the
    ``+unlevelled`` spec (and the peer, always) scores it as the stack is."""
    from tests.test_scoring_solvent import particles, relion_masked

    bench = load_bench()
    write_stack(tmp_path / "job012_classes.mrcs", relion_masked(particles(k=8)), 3.0)
    pd.DataFrame({"class": np.arange(1, 9), "distribution": np.full(8, 0.125), "grade": GRADES}).to_csv(
        tmp_path / "job012_grades.csv", index=False)
    assert bench.main([str(tmp_path), "--model", "default", "--model", "default+unlevelled", "--peer", "none",
                       "--csv", str(tmp_path / "c.csv")]) == 0
    got = rows(capsys.readouterr().out)
    assert set(got) == {("job012", "default"), ("job012", "default+unlevelled")}
    per_class = pd.read_csv(tmp_path / "c.csv")
    on = per_class[per_class["model"] == "default"]["score"].to_numpy()
    off = per_class[per_class["model"] == "default+unlevelled"]["score"].to_numpy()
    assert np.abs(on - off).max() > 0.05  # every class was levelled, so some score moves
    assert bench.load_model("default+unlevelled", tmp_path).config.preprocessing.level_solvent is False
    assert bench.load_model("default", tmp_path).config.preprocessing.level_solvent is True
