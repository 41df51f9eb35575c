"""The shipped model on real class averages graded by eye: the targets of issue 28, fixed.

Every shared real set (``../shared/realdata``, read through ``benchmarks/score_real.py``, scored
as ``cryosift score`` scores a plain stack) is held to the same four targets: Spearman(score,
grade) >= 0.80, AUC of the classes graded >= 4 against the rest >= 0.95, and at the 3.5 cutoff
>= 90 % of the classes graded <= 2.5 kept and <= 10 % of those graded >= 4 kept. The sets are
for measuring only: nothing is trained, calibrated or chosen on them.

Targets the shipped model does not meet yet are strict expected failures, each with the figure
measured when it was marked (MODEL_CARD.md, "Real class averages"): one that starts to pass
fails the run, so the mark comes off as soon as a model meets it.
"""

from pathlib import Path

import numpy as np
import pytest

from tests.test_score_real_benchmark import load_bench

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "realdata"
SETS = ("relion-tutorial-betagal/job008", "relion-tutorial-betagal/job032", "relion-tutorial-betagal/job033")
CUTOFF = 3.5
TARGETS = {  # name: (figure, what meets it)
    "spearman": (lambda m: m["spearman"], lambda v: v >= 0.80),
    "auc": (lambda m: m["auc"], lambda v: v >= 0.95),
    "good_kept": (lambda m: m["good_fraction"], lambda v: v >= 0.90),
    "bad_kept": (lambda m: m["bad_fraction"], lambda v: v <= 0.10),
}
#: (set, target): the shipped model's figure when the mark was set (main at 823ec73).
NOT_MET = {
    ("job008", "spearman"): "0.47", ("job008", "auc"): "0.846", ("job008", "good_kept"): "0 of 5",
    ("job032", "good_kept"): "2 of 20",
    ("job033", "spearman"): "-0.44", ("job033", "auc"): "0.000", ("job033", "bad_kept"): "7 of 7",
}

pytestmark = pytest.mark.skipif(not FOLDER.is_dir(), reason=f"no real sets at {FOLDER}")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Per set: the shipped model's figures on it."""
    bench = load_bench()
    work = tmp_path_factory.mktemp("real")
    model = bench.load_model("default", work)
    out = {}
    for real in bench.find_sets([FOLDER], {}):
        score = bench.score_set(real, model, 10.0, work)["score"].to_numpy()
        grade = real.grades["grade"].to_numpy(np.float64)
        good, bad, kept = grade <= bench.GOOD_GRADE, grade >= bench.BAD_GRADE, score <= CUTOFF
        out[real.name] = {**bench.metrics(score, grade, CUTOFF),
                          "good_fraction": kept[good].mean(), "bad_fraction": kept[bad].mean()}
    return out


def test_every_shared_set_is_held_to_the_targets(figures):
    assert sorted(figures) == sorted(SETS)


@pytest.mark.parametrize("name, target", [
    pytest.param(s, t, marks=pytest.mark.xfail(
        strict=True, reason=f"not met yet: {NOT_MET[(s.rsplit('/', 1)[1], t)]}"))
    if (s.rsplit("/", 1)[1], t) in NOT_MET else (s, t)
    for s in SETS for t in TARGETS])
def test_shipped_model_meets_the_target_on_real_classes(figures, name, target):
    figure, meets = TARGETS[target]
    value = figure(figures[name])
    assert meets(value), f"{name}: {target} = {value:.3f}"
