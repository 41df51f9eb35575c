"""Applying selections to RELION and cryoSPARC particles: subsets, summaries, atomicity, RELION tools."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from cryosift.cli import main as cli_main
from cryosift.errors import InputError
from cryosift.io import read_cs, read_particles_star, write_particles_star
from cryosift.selection import SelectionPolicy, apply_final, apply_round, pool_particles
from cryosift.selection.apply import ClassifiedParticles
from tests.test_scoring_data import make_cryosparc_job, make_relion_job

STAR_HANDLER = shutil.which("relion_star_handler")

SCORES = {1: -0.4, 2: 2.5, 3: 2.4, 4: 3.5, 5: 4.5, 6: 5.7}


@pytest.fixture(scope="module")
def relion(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    job = make_relion_job(root, k=6, box=48, n_particles=120)
    pd.DataFrame({"class": list(SCORES), "score": list(SCORES.values())}).to_csv(root / "scores.csv", index=False)
    classes = read_particles_star(job / "run_it025_data.star").particles["rlnClassNumber"].to_numpy()
    return root, job / "run_it025_data.star", root / "scores.csv", classes


def count(classes, wanted):
    return int(np.isin(classes, list(wanted)).sum())


def test_round_one_writes_accepted_kept_rejected(relion, tmp_path):
    root, data, scores, classes = relion
    s = apply_round(data, scores, tmp_path / "r1", round=1, box=180)
    # <= 2.5: classes 1 (-0.4), 3 (2.4), 2 (2.5) -> floor(2.1) = 2 accepted: 1 and 3; 2 is an attractor
    assert s["classes"] == {"accepted": [1, 3], "attractor": [2], "kept": [4], "rejected": [5, 6]}
    assert s["rounds"] == 5 and s["stop"] is False and s["next"] == "classify"
    n = s["particles"]
    assert n["accepted"] == count(classes, {1, 3}) and n["attractor"] == count(classes, {2})
    assert n["kept"] == count(classes, {4}) and n["rejected"] == count(classes, {5, 6}) and n["total"] == 120
    acc = read_particles_star(tmp_path / "r1/accepted.star").particles
    kept = read_particles_star(tmp_path / "r1/kept.star").particles
    rej = read_particles_star(tmp_path / "r1/rejected.star").particles
    assert sorted(set(acc["rlnClassNumber"])) == [1, 3] and sorted(set(kept["rlnClassNumber"])) == [2, 4]
    assert sorted(set(rej["rlnClassNumber"])) == [5, 6]
    names = pd.concat([acc, kept, rej])["rlnImageName"]
    assert len(names) == 120 and names.is_unique
    np.testing.assert_array_equal(acc["rlnParticleFigureOfMerit"], acc["rlnClassNumber"].map(SCORES))
    np.testing.assert_allclose(kept["rlnClassScore"], np.clip((5 - kept["rlnClassNumber"].map(SCORES)) / 4, 0, 1))
    on_disk = json.loads((tmp_path / "r1/selection.json").read_text())
    assert on_disk == s and on_disk["outputs"]["kept"] == ["kept.star"]


def test_final_split_in_both_formats(relion, tmp_path):
    root, data, scores, classes = relion
    s = apply_final(data, scores, tmp_path / "final", formats=["star", "cs"])
    assert s["cutoffs"]["2.5"]["classes_kept"] == [1, 2, 3]
    assert s["cutoffs"]["3.5"]["classes_kept"] == [1, 2, 3, 4]
    assert s["cutoffs"]["4.5"]["classes_kept"] == [1, 2, 3, 4, 5]
    for cutoff, kept in [("2.5", {1, 2, 3}), ("3.5", {1, 2, 3, 4}), ("4.5", {1, 2, 3, 4, 5})]:
        assert s["cutoffs"][cutoff]["particles_kept"] == count(classes, kept)
        assert s["cutoffs"][cutoff]["particles_rejected"] == 120 - count(classes, kept)
        star = read_particles_star(tmp_path / f"final/score_le_{cutoff}.star")
        cs = read_cs(tmp_path / f"final/score_le_{cutoff}.cs")
        assert len(star) == len(cs) == count(classes, kept)
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == sorted(
        [f"score_le_{c}.{f}" for c in ("2.5", "3.5", "4.5") for f in ("star", "cs")] + ["selection.json"])


def test_cryosparc_subsets_keep_every_field(tmp_path):
    job = make_cryosparc_job(tmp_path, k=5, n_particles=80)
    particles = job / "J12_020_particles.cs"
    pd.DataFrame({"class": [1, 2, 3, 4, 5], "score": [1.0, 3.0, 4.0, 4.5, 2.0]}).to_csv(tmp_path / "s.csv", index=False)
    s = apply_final(particles, tmp_path / "s.csv", tmp_path / "out", cutoffs=[3.0])
    src = read_cs(particles)
    sub = read_cs(tmp_path / "out/score_le_3.cs")
    assert sub.fields() == src.fields()
    keep = np.isin(src["alignments2D/class"], [0, 1, 4])  # classes 1, 2, 5 (0-based in .cs)
    np.testing.assert_array_equal(sub["uid"], src["uid"][keep])
    np.testing.assert_array_equal(sub["ctf/df1_A"], src["ctf/df1_A"][keep])
    assert s["cutoffs"]["3"]["particles_kept"] == int(keep.sum())


def test_missing_or_nan_scores_are_errors_and_nothing_is_written(relion, tmp_path):
    root, data, _, _ = relion
    (tmp_path / "missing.csv").write_text("class,score\n1,1.0\n2,2.0\n3,3.0\n4,4.0\n5,4.6\n")
    with pytest.raises(InputError, match="missing.csv: no score for class 6"):
        apply_round(data, tmp_path / "missing.csv", tmp_path / "a", round=1, rounds=3)
    (tmp_path / "nan.csv").write_text("class,score\n1,1.0\n2,nan\n3,3.0\n4,4.0\n5,4.6\n6,1\n")
    with pytest.raises(InputError, match="class 2: score is NaN"):
        apply_final(data, tmp_path / "nan.csv", tmp_path / "b")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_a_failure_midway_leaves_no_outputs(relion, tmp_path, monkeypatch):
    root, data, scores, _ = relion
    real = ClassifiedParticles.write
    calls = []

    def failing(self, path, mask, scores=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(self, path, mask, scores)

    monkeypatch.setattr(ClassifiedParticles, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        apply_round(data, scores, tmp_path / "r", round=1, rounds=3)
    assert list((tmp_path / "r").iterdir()) == []  # neither subsets, summary nor temporaries


def test_pool_kept_and_accepted(relion, tmp_path):
    root, data, scores, classes = relion
    apply_round(data, scores, tmp_path / "r1", round=1, rounds=3)
    n = pool_particles([tmp_path / "r1/kept.star", tmp_path / "r1/accepted.star"], tmp_path / "pooled.star")
    assert n == count(classes, {1, 2, 3, 4}) == len(read_particles_star(tmp_path / "pooled.star"))
    with pytest.raises(InputError, match="appears in more than one input"):
        pool_particles([tmp_path / "r1/kept.star", tmp_path / "r1/kept.star"], tmp_path / "dup.star")
    assert not (tmp_path / "dup.star").exists()
    # Optics that went through cryoSPARC's float32 fields still pool with RELION's; other optics do not.
    kept = read_particles_star(tmp_path / "r1/kept.star")
    kept.optics["rlnSphericalAberration"] = np.float32(kept.optics["rlnSphericalAberration"]).astype(np.float64)
    write_particles_star(tmp_path / "r1/kept_f32.star", kept)
    assert pool_particles([tmp_path / "r1/accepted.star", tmp_path / "r1/kept_f32.star"], tmp_path / "p32.star") == n
    kept.optics["rlnImagePixelSize"] = kept.optics["rlnImagePixelSize"] * 1.01
    write_particles_star(tmp_path / "r1/kept_other.star", kept)
    with pytest.raises(InputError, match="optics groups differ"):
        pool_particles([tmp_path / "r1/accepted.star", tmp_path / "r1/kept_other.star"], tmp_path / "other.star")


def test_a_round_after_the_loop_stopped_counts_and_pools_nothing_twice(relion, tmp_path):
    from cryosift.pipeline.manifest import classified_particles, reuse_manifest, write_manifest

    root, data, scores, classes = relion
    write_manifest(tmp_path / "c2/classification.json", "builtin", data.parent)
    s2 = apply_round(classified_particles(tmp_path / "c2/classification.json"), scores, tmp_path / "r2", round=2, rounds=3,
                     policy=SelectionPolicy(accept_every_round=True))
    assert s2["particles"]["accepted"] == count(classes, {1, 3}) and s2["particles"]["rejected"] == count(classes, {5, 6})
    # Round 3 reuses round 2's classification: the same decision, but what round 2 accepted or
    # rejected is not accepted or rejected again; its kept particles carry over.
    reuse_manifest(tmp_path / "c3/classification.json", tmp_path / "c2/classification.json")
    s3 = apply_round(classified_particles(tmp_path / "c3/classification.json"), scores, tmp_path / "r3", round=3, rounds=3,
                     policy=SelectionPolicy(accept_every_round=True))
    kept = count(classes, {2, 4})
    assert s3["particles"] == {"accepted": 0, "attractor": count(classes, {2}), "kept": count(classes, {4}),
                               "rejected": 0, "total": kept}
    assert s3["stop"] is True and s3["classes"]["accepted"] == [] and s3["classes"]["rejected"] == []
    assert s3["carried_over_from"].endswith("c2/classification.json")
    assert s3["inputs"]["particles"] == str(tmp_path / "c3/classification.json")  # as the user named it
    assert len(read_particles_star(tmp_path / "r3/accepted.star")) == 0
    assert len(read_particles_star(tmp_path / "r3/rejected.star")) == 0
    n = pool_particles([tmp_path / "r2/accepted.star", tmp_path / "r3/accepted.star", tmp_path / "r3/kept.star"],
                       tmp_path / "pooled.star")
    assert n == count(classes, {1, 2, 3, 4})


def test_cli_select_steps(relion, tmp_path, capsys):
    root, data, scores, classes = relion
    assert cli_main(["select", "rounds", "--box", "256"]) == 0
    assert capsys.readouterr().out.strip() == "3"
    assert cli_main(["select", "round", "--particles", str(data), "--scores", str(scores), "--round", "2",
                     "--rounds", "3", "-o", str(tmp_path / "r2"), "--no-annotate"]) == 0
    s = json.loads((tmp_path / "r2/selection.json").read_text())
    assert s["classes"]["accepted"] == [] and s["classes"]["rejected"] == [5, 6] and s["stop"] is False
    assert "rlnParticleFigureOfMerit" not in read_particles_star(tmp_path / "r2/kept.star").particles
    assert cli_main(["select", "final", "--particles", str(data), "--scores", str(scores), "--cutoffs", "3.5",
                     "-o", str(tmp_path / "f")]) == 0
    assert len(read_particles_star(tmp_path / "f/score_le_3.5.star")) == count(classes, {1, 2, 3, 4})
    (tmp_path / "bad.csv").write_text("class,score\n1,x\n")
    assert cli_main(["select", "final", "--particles", str(data), "--scores", str(tmp_path / "bad.csv"),
                     "-o", str(tmp_path / "g")]) == 2
    assert "class 1: score is 'x', not a number" in capsys.readouterr().err


@pytest.mark.relion
@pytest.mark.skipif(STAR_HANDLER is None, reason="RELION (relion_star_handler) is not installed")
def test_relion_star_handler_selects_on_the_score_column(relion, tmp_path):
    root, data, scores, classes = relion
    apply_final(data, scores, tmp_path / "f")
    out = subprocess.run([STAR_HANDLER, "--i", str(tmp_path / "f/score_le_4.5.star"), "--o", str(tmp_path / "h.star"),
                          "--select", "rlnParticleFigureOfMerit", "--maxval", "3.5"],
                         capture_output=True, text=True, check=True)
    assert "will ignore (but maintain) values for the unknown label: rlnClassScore" in out.stdout + out.stderr
    relion = read_particles_star(tmp_path / "h.star").particles
    ours = read_particles_star(tmp_path / "f/score_le_3.5.star").particles
    assert len(relion) == len(ours) == count(classes, {1, 2, 3, 4})  # 3.5 itself kept, as ours
    assert relion["rlnImageName"].tolist() == ours["rlnImageName"].tolist()
    np.testing.assert_allclose(relion["rlnParticleFigureOfMerit"], ours["rlnParticleFigureOfMerit"], atol=1e-6)
    np.testing.assert_allclose(relion["rlnClassScore"], ours["rlnClassScore"], atol=1e-6)
